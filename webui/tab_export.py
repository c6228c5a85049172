"""Export tab: a merged model, the adapter alone or a GGUF file, as a download or a push to the Hugging Face Hub."""

from __future__ import annotations

import gradio as gr

from backend.errors import TuneForgeError
from backend.serving.export import GGUF_KINDS, KINDS, Exporter, gguf_verification, zipped_folder
from backend.serving.gguf_export import GGUF_TYPES
from backend.serving.servers import Servers
from webui.context import AppContext
from webui.i18n import say, t
from webui.lanes import DEVICE, STATUS
from webui.refusals import LINE, on_refusal
from webui.tab import Controls, Page, Tab


class ExportTab(Tab):
    id = "export"

    def __init__(self, ctx: AppContext, exporter: Exporter):
        super().__init__(ctx)
        self.exporter = exporter
        self.servers = Servers(ctx.jobs)

    def build(self) -> Controls:
        gr.Markdown(t("ui.export.intro"))
        self.run = gr.Dropdown(
            label=t("ui.run"), choices=self.ctx.jobs.finished_runs(), elem_id="export-run", info=t("ui.export.run_info")
        )
        with gr.Row():
            self.kind = gr.Radio(KINDS, value="merged", label=t("ui.export.kind"), elem_id="export-kind")
            self.gguf_type = gr.Dropdown(
                list(GGUF_TYPES),
                value="q8_0",
                label=t("ui.export.gguf_type"),
                info=t("ui.export.gguf_type_info"),
                visible=False,
                elem_id="export-gguf-type",
            )
            self.shard = gr.Textbox(
                "2GB",
                label=t("ui.export.shard"),
                info=t("ui.export.shard_info"),
                elem_id="export-shard",
            )
        self.gguf_table = gr.Markdown(t("ui.export.gguf_table"), visible=False, elem_id="export-gguf-table")
        self.export = gr.Button(t("ui.export.export"), variant="primary", elem_id="export-btn")
        self.download = gr.File(
            label=t("ui.export.download"), interactive=False, file_count="multiple", elem_id="export-file"
        )
        with gr.Accordion(t("ui.export.push_title"), open=False):
            self.repo = gr.Textbox(label=t("ui.export.repo"), placeholder="your-name/my-model", elem_id="push-repo")
            self.token = gr.Textbox(label=t("ui.export.token"), type="password", elem_id="push-token")
            self.private = gr.Checkbox(True, label=t("ui.export.private"), elem_id="push-private")
            self.push = gr.Button(t("ui.export.push"), elem_id="push-btn")
        with gr.Accordion(t("ui.export.serve_title"), open=False):
            gr.Markdown(t("ui.export.serve_intro"))
            with gr.Row():
                self.api_key = gr.Textbox(label=t("ui.export.api_key"), type="password", elem_id="serve-key")
                self.engine = gr.Radio(
                    ["transformers", "llamacpp"],
                    value="transformers",
                    label=t("ui.export.engine"),
                    info=t("ui.export.engine_info"),
                    elem_id="serve-engine",
                )
            with gr.Row():
                self.serve = gr.Button(t("ui.export.serve"), elem_id="serve-btn")
                self.unserve = gr.Button(t("ui.export.unserve"), elem_id="serve-stop")
            self.serve_message = gr.Markdown(elem_id="serve-message")
        self.message = gr.Markdown(elem_id="export-message")
        return {}

    def connect(self, page: Page) -> None:
        chosen = [self.run, self.kind, self.shard, self.gguf_type]
        self.export.click(self.on_export, chosen, [self.download, self.message], **DEVICE)
        self.push.click(self.on_push, [*chosen, self.repo, self.token, self.private], self.message)
        self.kind.change(
            lambda kind: (gr.update(visible=kind == "gguf"), gr.update(visible=kind in GGUF_KINDS)),
            self.kind,
            [self.gguf_type, self.gguf_table],
            **STATUS,
        )
        self.serve.click(self.on_serve, [self.run, self.api_key, self.engine], self.serve_message, **DEVICE)
        self.unserve.click(self.on_unserve, self.run, self.serve_message)
        self.ctx.blocks.load(self.runs, self.run, self.run)
        self.item.select(self.runs, self.run, self.run, **STATUS)
        page.finished.change(self.runs, self.run, self.run, **STATUS)

    @on_refusal("Cannot export", None, LINE)
    def on_export(self, run_id, kind, shard, gguf_type, progress=gr.Progress()):
        if not run_id:
            return None, say("msg.select_completed_run")
        stage = lambda line: progress(None, desc=line)  # noqa: E731
        work = lambda person: self.exporter.zip(run_id, kind, shard, gguf_type, stage)  # noqa: E731
        archive = self.ctx.act("export", work, run_id=run_id)
        folder = zipped_folder(archive, run_id)
        note = self.exporter.note(run_id, kind)
        files = [*map(str, folder.glob("*.gguf")), str(archive)]  # the .gguf alone too: LM Studio opens it as it is
        return files, say("msg.exported", folder=folder) + (f" {note}" if note else "") + checked_line(folder, kind)

    @on_refusal("Push failed")
    def on_push(self, run_id, kind, shard, gguf_type, repo, token, private):
        if not run_id:
            return say("msg.select_completed_run")
        settings = (run_id, repo, token, private, kind, gguf_type)
        url = self.ctx.act("export_push", lambda person: self.exporter.push(*settings), run_id=run_id)
        return say("msg.pushed", url=url)

    @on_refusal("Cannot serve")
    def on_serve(self, run_id, api_key, engine="transformers"):
        if not run_id:
            return say("msg.select_completed_run")

        def serve(person):
            if self.ctx.gate.shared and not api_key.strip():  # logins guard the studio, a key guards its servers
                raise TuneForgeError("in a studio with logins, give the server an API key first")
            return self.servers.start(run_id, api_key.strip(), engine)

        url = self.ctx.act("serve", serve, run_id=run_id)
        key = "<your key>" if api_key.strip() else "-"
        example = (
            f'from openai import OpenAI\nclient = OpenAI(base_url="{url}", api_key="{key}")\n'
            f'client.chat.completions.create(model="{run_id}", messages=[{{"role": "user", "content": "Hello"}}])'
        )
        return f"Serving run `{run_id}` at **{url}** (model `{run_id}`).\n\n```python\n{example}\n```"

    @on_refusal("Cannot stop")
    def on_unserve(self, run_id):
        if not run_id:
            return "Select the served run first."
        stopped = self.ctx.act("serve", lambda person: self.servers.stop(run_id), run_id=run_id)
        return f"Stopped serving `{run_id}`." if stopped else f"Run `{run_id}` was not being served."

    def runs(self, run_id=None):
        """The completed runs; with nothing picked yet, the newest."""
        finished = self.ctx.jobs.finished_runs()
        return gr.update(choices=finished, value=run_id or (finished[0] if finished else None))


def checked_line(folder, kind: str) -> str:
    """What llama.cpp measured of a GGUF export, for the message under the button; '' for other kinds."""
    check = gguf_verification(folder) if kind in GGUF_KINDS else {}
    if not check:
        return ""
    line = " " + say("msg.gguf_checked", agree=check.get("agree"), tokens=check.get("tokens"),
                     size=f"{check.get('size_bytes', 0) / 1024**2:.1f} MB")  # fmt: skip
    if "ppl" in check:
        line += " " + say("msg.gguf_perplexity", ppl=f"{check['ppl']:.3f}", ppl_f16=f"{check['ppl_f16']:.3f}")
    return line
