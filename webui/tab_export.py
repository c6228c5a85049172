"""Export tab: a merged model, the adapter alone or a GGUF file, as a download or a push to the Hugging Face Hub."""

from __future__ import annotations

import gradio as gr

from backend.errors import TuneForgeError
from backend.serving.export import KINDS, Exporter, zipped_folder
from backend.serving.gguf_export import GGUF_TYPES
from backend.serving.servers import Servers
from webui.context import AppContext
from webui.lanes import DEVICE, STATUS
from webui.refusals import LINE, on_refusal
from webui.tab import Controls, Page, Tab


class ExportTab(Tab):
    title, id = "Export", "export"

    def __init__(self, ctx: AppContext, exporter: Exporter):
        super().__init__(ctx)
        self.exporter = exporter
        self.servers = Servers(ctx.jobs)

    def build(self) -> Controls:
        gr.Markdown(
            "**merged** folds a LoRA adapter into its base model and saves a full model (safetensors, sharded, with "
            "the tokenizer and chat template) that plain transformers loads. **adapter** is the small PEFT adapter "
            "alone. **gguf** is the merged model as one file for llama.cpp, Ollama and LM Studio, with an Ollama "
            "`Modelfile`; it is read back and compared with the merged model before it is kept."
        )
        with gr.Row():
            self.run = gr.Dropdown(label="Run", choices=self.ctx.jobs.finished_runs(), elem_id="export-run", scale=3)
            self.refresh = gr.Button("↻ runs", size="sm", scale=0)
        with gr.Row():
            self.kind = gr.Radio(KINDS, value="merged", label="What to export", elem_id="export-kind")
            self.gguf_type = gr.Dropdown(
                list(GGUF_TYPES),
                value="q8_0",
                label="GGUF type",
                info="f16 and bf16 keep every weight; q8_0 is half their size, within 5% of the merged model",
                visible=False,
                elem_id="export-gguf-type",
            )
            self.shard = gr.Textbox(
                "2GB",
                label="max_shard_size",
                info="Largest safetensors file, e.g. 500MB or 5GB",
                elem_id="export-shard",
            )
        self.export = gr.Button("Export as zip", variant="primary", elem_id="export-btn")
        self.download = gr.File(label="Download", interactive=False, file_count="multiple", elem_id="export-file")
        with gr.Accordion("Push to the Hugging Face Hub", open=False):
            self.repo = gr.Textbox(label="Repository", placeholder="your-name/my-model", elem_id="push-repo")
            self.token = gr.Textbox(label="Access token (write)", type="password", elem_id="push-token")
            self.private = gr.Checkbox(True, label="Private repository", elem_id="push-private")
            self.push = gr.Button("Push", elem_id="push-btn")
        with gr.Accordion("Serve over an OpenAI-compatible API", open=False):
            gr.Markdown(
                "Starts `python -m backend.serve` for the selected run on this machine (127.0.0.1): "
                "`/v1/models` and `/v1/chat/completions`, streamed or not, for any OpenAI client."
            )
            self.api_key = gr.Textbox(label="API key (optional)", type="password", elem_id="serve-key")
            with gr.Row():
                self.serve = gr.Button("Serve", elem_id="serve-btn")
                self.unserve = gr.Button("Stop serving", elem_id="serve-stop")
            self.serve_message = gr.Markdown(elem_id="serve-message")
        self.message = gr.Markdown(elem_id="export-message")
        return {}

    def connect(self, page: Page) -> None:
        chosen = [self.run, self.kind, self.shard, self.gguf_type]
        self.export.click(self.on_export, chosen, [self.download, self.message], **DEVICE)
        self.push.click(self.on_push, [*chosen, self.repo, self.token, self.private], self.message)
        self.kind.change(lambda kind: gr.update(visible=kind == "gguf"), self.kind, self.gguf_type, **STATUS)
        self.serve.click(self.on_serve, [self.run, self.api_key], self.serve_message, **DEVICE)
        self.unserve.click(self.on_unserve, self.run, self.serve_message)
        self.refresh.click(self.runs, None, self.run)
        self.ctx.blocks.load(self.runs, None, self.run)

    @on_refusal("Cannot export", None, LINE)
    def on_export(self, run_id, kind, shard, gguf_type, progress=gr.Progress()):
        if not run_id:
            return None, "Select a completed run first."
        say = lambda line: progress(None, desc=line)  # noqa: E731
        work = lambda person: self.exporter.zip(run_id, kind, shard, gguf_type, say)  # noqa: E731
        archive = self.ctx.act("export", work, run_id=run_id)
        folder = zipped_folder(archive, run_id)
        note = self.exporter.note(run_id, kind)
        files = [*map(str, folder.glob("*.gguf")), str(archive)]  # the .gguf alone too: LM Studio opens it as it is
        return files, f"Exported to `{folder}`; ready to download." + (f" {note}" if note else "")

    @on_refusal("Push failed")
    def on_push(self, run_id, kind, shard, gguf_type, repo, token, private):
        if not run_id:
            return "Select a completed run first."
        settings = (run_id, repo, token, private, kind, gguf_type)
        url = self.ctx.act("export_push", lambda person: self.exporter.push(*settings), run_id=run_id)
        return f"Pushed to {url}"

    @on_refusal("Cannot serve")
    def on_serve(self, run_id, api_key):
        if not run_id:
            return "Select a completed run first."

        def serve(person):
            if self.ctx.gate.shared and not api_key.strip():  # logins guard the studio, a key guards its servers
                raise TuneForgeError("in a studio with logins, give the server an API key first")
            return self.servers.start(run_id, api_key.strip())

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

    def runs(self):
        return gr.update(choices=self.ctx.jobs.finished_runs())
