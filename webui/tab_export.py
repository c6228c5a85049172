"""Export tab: a merged model or the adapter alone, as a zip download or a push to the Hugging Face Hub."""

from __future__ import annotations

import gradio as gr

from backend.serving.export import Exporter
from webui.context import AppContext
from webui.lanes import DEVICE
from webui.refusals import LINE, on_refusal
from webui.tab import Controls, Page, Tab


class ExportTab(Tab):
    title, id = "Export", "export"

    def __init__(self, ctx: AppContext, exporter: Exporter):
        super().__init__(ctx)
        self.exporter = exporter

    def build(self) -> Controls:
        gr.Markdown(
            "**merged** folds a LoRA adapter into its base model and saves a full model (safetensors, sharded, with "
            "the tokenizer and chat template) that plain transformers loads. **adapter** is the small PEFT adapter "
            "alone."
        )
        with gr.Row():
            self.run = gr.Dropdown(label="Run", choices=self.ctx.jobs.finished_runs(), elem_id="export-run", scale=3)
            self.refresh = gr.Button("↻ runs", size="sm", scale=0)
        with gr.Row():
            self.kind = gr.Radio(["merged", "adapter"], value="merged", label="What to export", elem_id="export-kind")
            self.shard = gr.Textbox(
                "2GB",
                label="max_shard_size",
                info="Largest safetensors file, e.g. 500MB or 5GB",
                elem_id="export-shard",
            )
        self.export = gr.Button("Export as zip", variant="primary", elem_id="export-btn")
        self.download = gr.File(label="Download", interactive=False, elem_id="export-file")
        with gr.Accordion("Push to the Hugging Face Hub", open=False):
            self.repo = gr.Textbox(label="Repository", placeholder="your-name/my-model", elem_id="push-repo")
            self.token = gr.Textbox(label="Access token (write)", type="password", elem_id="push-token")
            self.private = gr.Checkbox(True, label="Private repository", elem_id="push-private")
            self.push = gr.Button("Push", elem_id="push-btn")
        self.message = gr.Markdown(elem_id="export-message")
        return {}

    def connect(self, page: Page) -> None:
        self.export.click(self.on_export, [self.run, self.kind, self.shard], [self.download, self.message], **DEVICE)
        self.push.click(self.on_push, [self.run, self.kind, self.repo, self.token, self.private], self.message)
        self.refresh.click(self.runs, None, self.run)
        self.ctx.blocks.load(self.runs, None, self.run)

    @on_refusal("Cannot export", None, LINE)
    def on_export(self, run_id, kind, shard):
        if not run_id:
            return None, "Select a completed run first."
        archive = self.ctx.act("export", lambda person: self.exporter.zip(run_id, kind, shard), run_id=run_id)
        note = self.exporter.note(run_id, kind)
        return str(archive), f"Exported to `{archive.parent / kind}`; the zip is ready to download." + (
            f" {note}" if note else ""
        )

    @on_refusal("Push failed")
    def on_push(self, run_id, kind, repo, token, private):
        if not run_id:
            return "Select a completed run first."
        settings = (run_id, repo, token, private, kind)
        url = self.ctx.act("export_push", lambda person: self.exporter.push(*settings), run_id=run_id)
        return f"Pushed to {url}"

    def runs(self):
        return gr.update(choices=self.ctx.jobs.finished_runs())
