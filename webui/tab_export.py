"""Export tab: a merged model or the adapter alone, as a zip download or a push to the Hugging Face Hub."""

from __future__ import annotations

import gradio as gr

from backend.serving.export import Exporter
from webui.context import AppContext
from webui.lanes import DEVICE
from webui.refusals import LINE, on_refusal


def build(ctx: AppContext, exporter: Exporter) -> None:
    gr.Markdown(
        "**merged** folds a LoRA adapter into its base model and saves a full model (safetensors, sharded, with the "
        "tokenizer and chat template) that plain transformers loads. **adapter** is the small PEFT adapter alone."
    )
    with gr.Row():
        run = gr.Dropdown(label="Run", choices=ctx.jobs.finished_runs(), elem_id="export-run", scale=3)
        refresh = gr.Button("↻ runs", size="sm", scale=0)
    with gr.Row():
        kind = gr.Radio(["merged", "adapter"], value="merged", label="What to export", elem_id="export-kind")
        shard = gr.Textbox(
            "2GB", label="max_shard_size", info="Largest safetensors file, e.g. 500MB or 5GB", elem_id="export-shard"
        )
    export = gr.Button("Export as zip", variant="primary", elem_id="export-btn")
    download = gr.File(label="Download", interactive=False, elem_id="export-file")
    with gr.Accordion("Push to the Hugging Face Hub", open=False):
        repo = gr.Textbox(label="Repository", placeholder="your-name/my-model", elem_id="push-repo")
        token = gr.Textbox(label="Access token (write)", type="password", elem_id="push-token")
        private = gr.Checkbox(True, label="Private repository", elem_id="push-private")
        push = gr.Button("Push", elem_id="push-btn")
    message = gr.Markdown(elem_id="export-message")

    @on_refusal("Cannot export", None, LINE)
    def on_export(run_id, kind, shard):
        if not run_id:
            return None, "Select a completed run first."
        archive = exporter.zip(run_id, kind, shard)
        return str(archive), f"Exported to `{archive.parent / kind}`; the zip is ready to download."

    @on_refusal("Push failed")
    def on_push(run_id, kind, repo, token, private):
        if not run_id:
            return "Select a completed run first."
        return f"Pushed to {exporter.push(run_id, repo, token, private, kind)}"

    def runs():
        return gr.update(choices=ctx.jobs.finished_runs())

    export.click(on_export, [run, kind, shard], [download, message], **DEVICE)
    push.click(on_push, [run, kind, repo, token, private], message)
    refresh.click(runs, None, run)
    ctx.blocks.load(runs, None, run)
