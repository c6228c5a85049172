"""Train tab: hyperparameters, Start/Abort, the command preview, and the live view of a run."""

from __future__ import annotations

import html
import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.capability import describe, hardware_summary
from backend.config import fields
from backend.llamafactory import load_config_file
from webui.charts import loss_figure, loss_points, reward_figure
from webui.context import AppContext
from webui.formats import format_duration
from webui.forms import controls, form_updates, kept_notes, options_from
from webui.lanes import JOBS, STATUS
from webui.refusals import KEEP, LINE, REASON, on_refusal, on_refusal_raise

REFRESH_S = 1.0
LOG_LINES = 14
RUN_COLUMNS = ["run_id", "status", "queue_position", "step", "max_steps", "loss", "eval_loss", "tokens_per_s"]


def no_rewards() -> dict:
    """The reward chart hidden: it shows only for preference runs."""
    return gr.update(value=None, visible=False)


def progress_html(status: dict | None) -> str:
    if not status:
        return "<div id='run-progress' class='tf-progress-text'>No run selected.</div>"
    done = status["step"] / status["max_steps"] if status["max_steps"] else 0.0
    if status["status"] == "completed":
        done = 1.0
    loss = f"{status['loss']:.4f}" if status["loss"] is not None else "–"
    speed = status["tokens_per_s"] or "–"
    mfu = f" (MFU {status['mfu']:.0%})" if status.get("mfu") else ""
    detail = (
        f"<b>{status['status']}</b> · {html.escape(status['phase'])} · "
        f"step {status['step']}/{status['max_steps'] or '?'} · epoch {status['epoch']:.2f} · "
        f"loss {loss} · <span id='run-speed'>{speed} tok/s{mfu}</span> · ETA {format_duration(status['eta_s'])}"
    )
    if status["error"]:
        detail += f"<br><span class='tf-error'>{html.escape(status['error'])}</span>"
    return (
        f"<div id='run-progress' data-run='{html.escape(status['run_id'])}' data-status='{status['status']}' "
        f"data-step='{status['step']}'>"
        f"<div class='tf-bar'><div class='tf-fill' style='width:{100 * done:.1f}%'></div></div>"
        f"<div class='tf-progress-text'>{detail}</div></div>"
    )


def runs_frame(ctx: AppContext) -> pd.DataFrame:
    return pd.DataFrame(ctx.jobs.list_runs(), columns=RUN_COLUMNS).round({"loss": 4, "eval_loss": 4})


def build(ctx: AppContext, options: dict) -> dict:
    with gr.Row():
        with gr.Column(scale=2):
            with gr.Group():
                options.update(controls("basic"))
            with gr.Accordion("LoRA", open=False):
                options.update(controls("lora"))
            with gr.Accordion("Preference (dpo, orpo, kto)", open=False, elem_id="preference-options"):
                options.update(controls("preference"))
            with gr.Accordion("Devices and precision", open=False):
                gr.Markdown(describe(hardware_summary()), elem_id="hardware-summary")
                options.update(controls("devices"))
            with gr.Accordion("Advanced", open=False):
                options.update(controls("advanced"))
            with gr.Accordion("Preview command", open=False):
                preview_yaml = gr.Code(language="yaml", label="run.yaml", elem_id="preview-yaml")
                preview_cmd = gr.Textbox(label="Run it from a terminal", elem_id="preview-cmd", interactive=False)
                with gr.Row():
                    preview_btn = gr.Button("Preview", size="sm")
                    save_config = gr.DownloadButton("Save config", size="sm", elem_id="save-config")
                    load_config = gr.UploadButton(
                        "Load config", file_types=[".yaml", ".yml"], size="sm", elem_id="load-config"
                    )
            with gr.Row():
                start = gr.Button("Start", variant="primary", elem_id="start-btn")
                abort = gr.Button("Abort", variant="stop", elem_id="abort-btn")
            message = gr.Markdown(elem_id="train-message")
        with gr.Column(scale=3):
            run = gr.Dropdown(label="Run", choices=[r["run_id"] for r in ctx.jobs.list_runs()], elem_id="run-select")
            progress = gr.HTML(progress_html(None))
            chart = gr.Plot(None, label="Loss", elem_id="loss-chart")
            chart_caption = gr.Markdown(elem_id="chart-caption")
            rewards = gr.Plot(None, label="Preference rewards", elem_id="reward-chart", visible=False)
            log = gr.Textbox(
                label=f"Log (last {LOG_LINES} lines; the full log is train.log in the run folder)",
                lines=LOG_LINES,
                max_lines=LOG_LINES,
                autoscroll=True,
                elem_id="log-tail",
                interactive=False,
            )
    runs = gr.Dataframe(runs_frame(ctx), label="Runs", interactive=False, elem_id="runs-table")

    inputs = [options[f.name] for f in fields()]

    @on_refusal("Cannot start", "", "", LINE)
    def on_preview(*values):
        text, cmd = ctx.jobs.preview(options_from(values))
        return text, cmd, ""

    @on_refusal_raise("Cannot save")
    def on_save(*values):
        text, _ = ctx.jobs.preview(options_from(values))
        path = Path(tempfile.mkdtemp(prefix="tuneforge-config-")) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    @on_refusal(lambda file: f"Cannot load {Path(file).name}", *[KEEP] * len(inputs), LINE)
    def on_load_config(file):
        values, kept = form_updates(load_config_file(file))
        return values + [" ".join([f"Loaded `{Path(file).name}` into the form.", *kept_notes(kept)])]

    @on_refusal("Cannot start", KEEP, LINE)
    def on_start(*values):
        run_id = ctx.jobs.start(options_from(values))
        choices = [r["run_id"] for r in ctx.jobs.list_runs()]
        return gr.update(
            choices=choices, value=run_id
        ), f"Started run `{run_id}`. It keeps running if you close this page."

    @on_refusal("Cannot abort")
    def on_abort(run_id):
        if not run_id:
            return "Select a run to abort."
        ctx.jobs.abort(run_id)
        return f"Run `{run_id}` aborted."

    def refresh(run_id):
        return *run_view(run_id), runs_frame(ctx)

    @on_refusal(None, progress_html(None), None, "", no_rewards(), REASON)  # the log box says why
    def run_view(run_id):
        """Progress, loss chart, its caption, the reward chart and the log tail of one run."""
        if not run_id:
            return progress_html(None), None, "", no_rewards(), ""
        status, events = ctx.jobs.status(run_id), ctx.jobs.events(run_id)
        train, evals = loss_points(events)
        caption = f"{len(train)} train points · {len(evals)} eval points"
        reward_chart = reward_figure(events)
        rewards = gr.update(value=reward_chart, visible=True) if reward_chart else no_rewards()
        log = ctx.jobs.log_tail(run_id, LOG_LINES)
        return progress_html(status), loss_figure(events), caption, rewards, log

    def on_load():
        """A reopened page picks up the newest run, so a closed tab loses nothing."""
        choices = [r["run_id"] for r in ctx.jobs.list_runs()]
        return gr.update(choices=choices, value=choices[0] if choices else None)

    ctx.blocks.load(on_load, None, run)
    preview_btn.click(on_preview, inputs, [preview_yaml, preview_cmd, message])
    save_config.click(on_save, inputs, save_config)
    load_config.upload(on_load_config, load_config, [*inputs, message])
    start.click(on_preview, inputs, [preview_yaml, preview_cmd, message]).then(on_start, inputs, [run, message], **JOBS)
    abort.click(on_abort, run, message, **JOBS)
    live = [progress, chart, chart_caption, rewards, log, runs]
    run.change(refresh, run, live, **STATUS)
    gr.Timer(REFRESH_S).tick(refresh, run, live, show_progress="hidden", **STATUS)
    return {"run": run}
