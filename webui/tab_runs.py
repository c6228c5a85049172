"""Runs tab: every run in the workspace, the queue, A/B comparison, three-way chat, clone and resume."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from backend.config import fields
from backend.errors import TuneForgeError
from backend.runs.compare import differing_options, final_metrics
from backend.serving.adapters import import_adapter
from backend.serving.chat import BASE
from webui.charts import compare_figure
from webui.context import AppContext
from webui.formats import format_duration
from webui.forms import form_updates, kept_notes
from webui.lanes import DEVICE, JOBS, STATUS
from webui.refusals import KEEP, LINE, on_refusal, stream_with_refusal

HISTORY_COLUMNS = [
    "run_id",
    "status",
    "started",
    "duration",
    "step",
    "loss",
    "eval_loss",
    "metric",
    "method",
    "task",
    "dataset",
    "resumes",
]
REFRESH_S = 2.0


def history_frame(ctx: AppContext) -> pd.DataFrame:
    rows = []
    for run in ctx.jobs.list_runs():
        status = run["status"] + (f" #{run['queue_position']}" if run["queue_position"] else "")
        rows.append(
            {
                **run,
                "status": status,
                "started": time.strftime("%Y-%m-%d %H:%M", time.localtime(run["started"])) if run["started"] else "",
                "duration": format_duration(run["duration_s"]),
                "step": f"{run['step']}/{run['max_steps'] or '?'}",
                "loss": round(run["loss"], 4) if run["loss"] is not None else None,
                "eval_loss": round(run["eval_loss"], 4) if run["eval_loss"] is not None else None,
            }
        )
    return pd.DataFrame(rows, columns=HISTORY_COLUMNS)


def build(ctx: AppContext, train: dict, options: dict, tabs: gr.Tabs) -> None:
    gr.Markdown(
        "Every run in the workspace, newest first; queued runs show their place in line. Select runs to compare "
        "their loss curves, the options that differ and their final metrics."
    )
    history = gr.Dataframe(history_frame(ctx), interactive=False, elem_id="runs-history", wrap=True)
    run_ids = [r["run_id"] for r in ctx.jobs.list_runs()]
    with gr.Row():
        selected = gr.Dropdown(
            label="Selected runs",
            choices=run_ids,
            multiselect=True,
            elem_id="runs-selected",
            scale=4,
            info="The first selected run is the one Open, Clone, Resume and Cancel act on; compare takes them all.",
        )
        compare = gr.Button("Compare", variant="primary", elem_id="runs-compare", scale=1)
    with gr.Row():
        open_btn = gr.Button("Open in Train tab", size="sm", elem_id="runs-open")
        clone = gr.Button("Clone into the form", size="sm", elem_id="runs-clone")
        resume = gr.Button("Resume", size="sm", elem_id="runs-resume")
        cancel = gr.Button("Cancel / abort", size="sm", variant="stop", elem_id="runs-cancel")
    message = gr.Markdown(elem_id="runs-message")
    chart = gr.Plot(None, label="Loss by run", elem_id="compare-chart")
    with gr.Row():
        diff = gr.Dataframe(label="Options that differ", interactive=False, elem_id="compare-diff")
        metrics = gr.Dataframe(label="Final metrics", interactive=False, elem_id="compare-metrics")

    with gr.Accordion("Ask the base model and two runs the same question", open=False):
        prompt = gr.Textbox(label="Prompt", placeholder="What is your name?", elem_id="three-way-prompt")
        ask = gr.Button("Ask base, A and B", elem_id="three-way-ask")
        with gr.Row():
            answers = [
                gr.Textbox(label=label, lines=6, interactive=False, elem_id=f"three-way-{key}")
                for key, label in (("base", "base"), ("a", "run A (first selected)"), ("b", "run B (second selected)"))
            ]

    known = gr.State([])

    def refresh(previous):
        # Only the choices, and only when they change: re-rendering the open list, or setting the
        # value, could swallow a pick made while the refresh was in flight.
        runs = [r["run_id"] for r in ctx.jobs.list_runs()]
        return history_frame(ctx), gr.update(choices=runs) if runs != previous else gr.update(), runs

    @on_refusal("Cannot compare", KEEP, None, None, LINE)
    def on_compare(chosen):
        chosen = list(chosen or [])
        if len(chosen) < 2:
            return gr.update(), None, None, "Select two or more runs to compare."
        figure = compare_figure({run_id: ctx.jobs.events(run_id) for run_id in chosen})
        options_rows, metric_rows = differing_options(ctx.jobs, chosen), final_metrics(ctx.jobs, chosen)
        note = "" if options_rows else "The selected runs used identical options."
        return figure, pd.DataFrame(options_rows), pd.DataFrame(metric_rows), note

    def first(chosen):
        if not chosen:
            raise TuneForgeError("select a run first")
        return chosen[0]

    @on_refusal("Cannot open", KEEP, KEEP, LINE)
    def on_open(chosen):
        run_id = first(chosen)
        choices = [r["run_id"] for r in ctx.jobs.list_runs()]
        return gr.update(choices=choices, value=run_id), gr.Tabs(selected="train"), ""

    @on_refusal("Cannot clone", *[KEEP] * len(fields()), KEEP, LINE)
    def on_clone(chosen):
        run_id = first(chosen)
        values, kept = form_updates(ctx.jobs.config(run_id))
        note = f"The form now holds run `{run_id}`'s options; change what you want to test and press Start."
        note = " ".join([note, *kept_notes(kept)])
        return values + [gr.Tabs(selected="train"), note]

    @on_refusal("Cannot resume")
    def on_resume(chosen):
        run_id = ctx.jobs.resume(first(chosen))
        return f"Run `{run_id}` resumes from its last checkpoint (queued if another run is training)."

    @on_refusal("Cannot cancel")
    def on_cancel(chosen):
        run_id = first(chosen)
        ctx.jobs.abort(run_id)
        return f"Run `{run_id}` cancelled."

    def on_ask(question, chosen):
        chosen = list(chosen or [])
        if len(chosen) < 2:
            yield "", "", "Select two runs (A and B) first."
            return
        targets = [BASE, chosen[0], chosen[1]]
        replies = ["", "", ""]
        # One model is in memory at a time, so the three answer in turn.
        for i, target in enumerate(targets):
            stream = ctx.chat.stream(target, question, [], temperature=0.0, max_new_tokens=128)
            for text in stream_with_refusal(stream):
                replies[i] = text
                yield tuple(replies)

    with gr.Accordion("Import an adapter trained elsewhere (e.g. LLaMA-Factory's saves/…/lora/sft)", open=False):
        with gr.Row():
            adapter_dir = gr.Textbox(label="Adapter folder", placeholder="/path/to/saves/model/lora/sft", scale=3)
            adapter_name = gr.Textbox(label="Run name", placeholder="empty: imported-<folder name>", scale=2)
            import_btn = gr.Button("Import", scale=1, elem_id="runs-import")

    @on_refusal("Cannot import")
    def on_import(folder, name):
        run_id = import_adapter(ctx.jobs, folder, name)
        return f"Imported as run `{run_id}`: chat with it, evaluate, compare or export it like any run."

    form = [options[f.name] for f in fields()]
    gr.Timer(REFRESH_S).tick(refresh, known, [history, selected, known], show_progress="hidden", **STATUS)
    ctx.blocks.load(refresh, known, [history, selected, known], **STATUS)
    compare.click(on_compare, selected, [chart, diff, metrics, message])
    open_btn.click(on_open, selected, [train["run"], tabs, message])
    clone.click(on_clone, selected, [*form, tabs, message])
    resume.click(on_resume, selected, message, **JOBS)
    cancel.click(on_cancel, selected, message, **JOBS)
    ask.click(on_ask, [prompt, selected], answers, **DEVICE)
    import_btn.click(on_import, [adapter_dir, adapter_name], message, **JOBS)
