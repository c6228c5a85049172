"""Train tab: hyperparameters, Start/Abort, the command preview, and the live view of a run."""

from __future__ import annotations

import html
import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.capability import describe, hardware_summary
from backend.config import fields
from backend.llamafactory import load_config_file
from webui.charts import loss_figure, loss_points, reward_figure
from webui.context import AppContext, caller
from webui.empty import empty_figure, empty_table
from webui.fit_view import FIT_TRIGGERS, warning_for
from webui.formats import format_duration
from webui.forms import controls, form_updates, kept_notes, options_from
from webui.i18n import headed, say, say_line, t
from webui.lanes import JOBS
from webui.refusals import KEEP, LINE, REASON, on_refusal, on_refusal_raise
from webui.sent import SentMemory
from webui.tab import Controls, Page, Tab

REFRESH_S = 2.0  # each tick is a message the whole page processes: webui/idle_cost.py
SMOOTHING = 0.6  # TensorBoard's default weight for its smoothed line
NO_LOSS = partial(empty_figure, "empty.loss")
LOG_LINES = 14
RUN_COLUMNS = ["run_id", "status", "queue_position", "step", "max_steps", "loss", "eval_loss", "tokens_per_s"]


def no_rewards() -> dict:
    """The reward chart hidden: it shows only for preference and grpo runs."""
    return gr.update(value=None, visible=False)


def completions_view(events: list[dict]) -> dict:
    """A grpo run's latest sampled completions with their rewards; hidden for other runs."""
    latest = next((e for e in reversed(events) if e["type"] == "completions"), None)
    if latest is None:
        return gr.update(value=None, visible=False)
    frame = pd.DataFrame(latest["rows"]).round(4)
    frame.insert(0, "step", latest["step"])
    return gr.update(value=headed(frame), visible=True)


def progress_html(status: dict | None) -> str:
    if not status:
        return f"<div id='run-progress' class='tf-progress-text'>{html.escape(say('msg.no_run_selected'))}</div>"
    done = status["step"] / status["max_steps"] if status["max_steps"] else 0.0
    if status["status"] == "completed":
        done = 1.0
    loss = f"{status['loss']:.4f}" if status["loss"] is not None else "–"
    speed = status["tokens_per_s"] or "–"
    mfu = f" (MFU {status['mfu']:.0%})" if status.get("mfu") else ""
    # What the run computes in, beside its speed: what precision auto chose and what packed rows attend with.
    computes = " · ".join(html.escape(str(status[k])) for k in ("precision", "attention") if status.get(k))
    detail = say(
        "msg.progress_line",
        status=f"<b>{status['status']}</b>",
        phase=html.escape(say_line(status["phase"])),
        step=status["step"],
        max_steps=status["max_steps"] or "?",
        epoch=f"{status['epoch']:.2f}",
        loss=loss,
        speed=f"<span id='run-speed' title='{html.escape(say('msg.mfu_help'), quote=True)}'>{speed} tok/s{mfu}</span>"
        + (f" · <span id='run-precision'>{computes}</span>" if computes else ""),
        eta=format_duration(status["eta_s"]),
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
    runs = ctx.jobs.list_runs()
    if not runs:
        return empty_table("empty.runs")
    return headed(pd.DataFrame(runs, columns=RUN_COLUMNS).round({"loss": 4, "eval_loss": 4}))


def run_ids(ctx: AppContext) -> list[str]:
    return [r["run_id"] for r in ctx.jobs.list_runs()]


class TrainTab(Tab):
    id = "train"

    def build(self) -> Controls:
        with gr.Row():
            with gr.Column(scale=2):
                options = self._form()
                self._preview()
                with gr.Row():
                    self.start = gr.Button(t("ui.train.start"), variant="primary", elem_id="start-btn")
                    self.abort = gr.Button(t("ui.train.abort"), variant="stop", elem_id="abort-btn")
                self.message = gr.Markdown(elem_id="train-message")
                self.fit_warning = gr.Markdown(elem_id="fit-warning")  # before Start: a run that may not fit
            with gr.Column(scale=3):
                self._live_view()
        self.runs = gr.Dataframe(
            runs_frame(self.ctx),
            label=t("ui.train.runs"),
            interactive=False,
            elem_id="runs-table",
            elem_classes="tf-table",
        )
        self.timer = gr.Timer(REFRESH_S)
        return options

    def _form(self) -> Controls:
        options = {}
        with gr.Group():
            options.update(controls("basic"))
        with gr.Accordion(t("ui.train.lora"), open=False):
            options.update(controls("lora"))
        with gr.Accordion(t("ui.train.preference"), open=False, elem_id="preference-options"):
            options.update(controls("preference"))
        with gr.Accordion(t("ui.train.grpo"), open=False, elem_id="grpo-options"):
            options.update(controls("rewards"))
        with gr.Accordion(t("ui.train.devices"), open=False):
            gr.Markdown(describe(hardware_summary()), elem_id="hardware-summary")
            options.update(controls("devices"))
        with gr.Accordion(t("ui.train.advanced"), open=False):
            options.update(controls("advanced"))
        return options

    def _preview(self) -> None:
        with gr.Accordion(t("ui.train.preview"), open=False):
            self.preview_yaml = gr.Code(language="yaml", label="run.yaml", elem_id="preview-yaml")
            self.preview_cmd = gr.Textbox(label=t("ui.train.terminal"), elem_id="preview-cmd", interactive=False)
            with gr.Row():
                self.preview_btn = gr.Button(t("ui.train.preview_btn"), size="sm")
                self.save_config = gr.DownloadButton(t("ui.train.save_config"), size="sm", elem_id="save-config")
                self.load_config = gr.UploadButton(
                    t("ui.train.load_config"), file_types=[".yaml", ".yml"], size="sm", elem_id="load-config"
                )

    def _live_view(self) -> None:
        self.run = gr.Dropdown(label=t("ui.run"), choices=run_ids(self.ctx), elem_id="run-select")
        self.progress = gr.HTML(progress_html(None))
        self.chart = gr.Plot(empty_figure("empty.loss"), label=t("ui.train.loss"), elem_id="loss-chart")
        self.smoothing = gr.Slider(
            0.0,
            0.99,
            value=SMOOTHING,
            step=0.01,
            label=t("ui.train.smoothing"),
            info=t("ui.train.smoothing_info"),
            elem_id="loss-smoothing",
        )
        self.chart_caption = gr.Markdown(elem_id="chart-caption")
        self.rewards = gr.Plot(None, label=t("ui.train.rewards"), elem_id="reward-chart", visible=False)
        self.completions = gr.Dataframe(
            None,
            label=t("ui.train.completions"),
            interactive=False,
            wrap=True,
            visible=False,
            elem_id="completions-table",
            elem_classes="tf-table",
        )
        self.log = gr.Textbox(
            label=t("ui.train.log"),
            lines=LOG_LINES,
            max_lines=LOG_LINES,
            autoscroll=True,
            elem_id="log-tail",
            interactive=False,
        )

    def connect(self, page: Page) -> None:
        inputs = [page.form[f.name] for f in fields()]
        preview = [self.preview_yaml, self.preview_cmd, self.message]
        self.ctx.blocks.load(self.on_load, None, self.run)
        self.preview_btn.click(self.on_preview, inputs, preview)
        self.save_config.click(self.on_save, inputs, self.save_config)
        # Its progress on the message alone, not on every control it fills (webui/progress_targets.py).
        filled = [*inputs, self.message]
        self.load_config.upload(self.on_load_config, self.load_config, filled, show_progress_on=self.message)
        # Start fills the preview too, so the YAML and command of what was started stay in view.
        self.start.click(self.on_preview, inputs, preview).then(self.on_start, inputs, [self.run, self.message], **JOBS)
        self.abort.click(self.on_abort, self.run, self.message, **JOBS)
        # With the page's load among them, so that its first warning cannot land after a later one.
        fit_triggers = [page.form[name].change for name in FIT_TRIGGERS] + [self.start.click, self.ctx.blocks.load]
        gr.on(
            fit_triggers,
            self.on_fit_warning,
            inputs,
            self.fit_warning,
            show_progress="hidden",
            trigger_mode="always_last",
        )
        live = [self.progress, self.chart, self.chart_caption, self.rewards, self.completions, self.log, self.runs]
        sent, drawn_from = SentMemory(), [self.run, self.smoothing]
        sent.redraw_on(self.run.change, self.refresh, drawn_from, live)
        sent.redraw_on(self.smoothing.release, self.refresh, drawn_from, live)
        sent.tick(self.timer, self.refresh, drawn_from, live)

    @on_refusal("Cannot start", "", "", LINE)
    def on_preview(self, *values):
        text, cmd = self.ctx.jobs.preview(options_from(values))
        return text, cmd, ""

    @on_refusal_raise("Cannot save")
    def on_save(self, *values):
        text, _ = self.ctx.jobs.preview(options_from(values))
        path = Path(tempfile.mkdtemp(prefix="tuneforge-config-")) / "run.yaml"
        path.write_text(text, encoding="utf-8")
        return str(path)

    @on_refusal(lambda self, file: f"Cannot load {Path(str(file)).name}", *[KEEP] * len(fields()), LINE)
    def on_load_config(self, file):
        if not file:  # the file box emptied: nothing to load
            return *[gr.update()] * len(fields()), ""
        values, kept = form_updates(load_config_file(file))
        return *values, " ".join([say("msg.loaded_config", file=Path(file).name), *kept_notes(kept)])

    @on_refusal("Cannot start", KEEP, LINE)
    def on_start(self, *values):
        run_id = self.ctx.gate.start(caller(), options_from(values))
        picked = gr.update(choices=run_ids(self.ctx), value=run_id)
        return picked, say("msg.started_run", run=run_id)

    def on_fit_warning(self, *values):
        return warning_for(self.ctx, values)

    @on_refusal("Cannot abort")
    def on_abort(self, run_id):
        if not run_id:
            return say("msg.select_run_to_abort")
        self.ctx.gate.abort(caller(), run_id)
        return say("msg.run_aborted", run=run_id)

    def refresh(self, run_id, smoothing=SMOOTHING):
        return *self._run_view(run_id, smoothing), runs_frame(self.ctx)

    @on_refusal(None, lambda: progress_html(None), NO_LOSS, "", no_rewards(), no_rewards(), REASON)  # the log says why
    def _run_view(self, run_id, smoothing):
        """Progress, loss chart, its caption, the reward chart, a grpo run's completions and the log tail of one run."""
        if not run_id:
            return progress_html(None), NO_LOSS(), "", no_rewards(), no_rewards(), ""
        status, events = self.ctx.jobs.status(run_id), self.ctx.jobs.events(run_id)
        train, evals = loss_points(events)
        caption = say("msg.chart_caption", train=len(train), evals=len(evals))
        reward_chart = reward_figure(events, smoothing)
        rewards = gr.update(value=reward_chart, visible=True) if reward_chart else no_rewards()
        log = self.ctx.jobs.log_tail(run_id, LOG_LINES)
        loss = loss_figure(events, smoothing=smoothing) or NO_LOSS()
        return progress_html(status), loss, caption, rewards, completions_view(events), log

    def on_load(self):
        """A reopened page picks up the newest run, so a closed tab loses nothing."""
        choices = run_ids(self.ctx)
        return gr.update(choices=choices, value=choices[0] if choices else None)
