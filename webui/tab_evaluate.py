"""Evaluate tab: the validation loss of finished runs, side by side with their training loss."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from backend.errors import TuneForgeError
from webui.charts import loss_figure
from webui.context import AppContext

METRIC_COLUMNS = ["run_id", "status", "train_loss", "eval_loss", "global_step", "tokens_per_s", "train_runtime_s"]


def metrics_frame(ctx: AppContext) -> pd.DataFrame:
    rows = []
    for run in ctx.jobs.list_runs():
        end = next((e for e in reversed(ctx.jobs.events(run["run_id"])) if e["type"] == "end"), {})
        rows.append({**{k: end.get(k) for k in METRIC_COLUMNS}, "run_id": run["run_id"], "status": run["status"]})
    return pd.DataFrame(rows, columns=METRIC_COLUMNS)


def build(ctx: AppContext) -> None:
    gr.Markdown("Validation loss is computed on the held-out `val_size` share of the dataset. Lower is better.")
    refresh = gr.Button("Refresh", size="sm")
    table = gr.Dataframe(metrics_frame(ctx), label="Runs", interactive=False, elem_id="eval-table")
    run = gr.Dropdown(label="Run", choices=[], elem_id="eval-run")
    chart = gr.Plot(None, label="Train vs validation loss", elem_id="eval-chart")

    def on_refresh():
        return metrics_frame(ctx), gr.update(choices=[r["run_id"] for r in ctx.jobs.list_runs()])

    def on_run(run_id):
        try:
            return loss_figure(ctx.jobs.events(run_id), "Train vs validation loss") if run_id else None
        except TuneForgeError:
            return None

    refresh.click(on_refresh, None, [table, run])
    ctx.blocks.load(on_refresh, None, [table, run])
    run.change(on_run, run, chart)
