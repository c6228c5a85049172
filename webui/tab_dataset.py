"""Dataset tab: pick a bundled demo or upload a file, and see what was detected."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from backend.data import demo_datasets, inspect_dataset, store_upload
from backend.errors import TuneForgeError
from webui.context import AppContext
from webui.forms import controls


def describe(spec: str):
    """Detected format, row count and preview, or the located error."""
    try:
        info = inspect_dataset(spec)
    except TuneForgeError as exc:
        return f"**Cannot use this dataset.** {exc}", pd.DataFrame()
    summary = f"**Format:** {info.format} · **Rows:** {info.rows} · **Columns:** {', '.join(info.columns)}"
    return summary, pd.DataFrame(info.preview)


def build(ctx: AppContext) -> dict:
    gr.Markdown("Choose a bundled demo or upload your own CSV, JSON, JSONL or Parquet file.")
    with gr.Row():
        demo = gr.Dropdown(
            choices=list(demo_datasets()), value="demo_identity", label="Bundled demo", elem_id="demo-dataset", scale=1
        )
        upload = gr.File(
            label="Upload a dataset",
            file_types=[".csv", ".json", ".jsonl", ".parquet"],
            elem_id="dataset-upload",
            scale=2,
        )
    options = controls("dataset")
    summary = gr.Markdown(elem_id="dataset-summary")
    preview = gr.Dataframe(label="First rows", interactive=False, wrap=True, elem_id="dataset-preview")

    def on_upload(file):
        """Keep the file in the workspace and point `dataset` at it; the drop zone empties for the next one."""
        if file is None:
            return gr.update(), None, gr.update()
        try:
            return str(store_upload(file, ctx.uploads_dir)), None, None
        except TuneForgeError as exc:
            gr.Warning(str(exc))
            return gr.update(), None, gr.update()

    demo.input(lambda name: name or gr.update(), demo, options["dataset"])
    upload.upload(on_upload, upload, [options["dataset"], upload, demo])
    options["dataset"].change(describe, options["dataset"], [summary, preview])
    ctx.blocks.load(describe, options["dataset"], [summary, preview])
    return options
