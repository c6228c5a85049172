"""Sweeps tab: search the form's hyperparameters with Optuna, watch the trials, open the best run."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from backend.config import fields, parse_yaml
from backend.sweeps.sweep_spec import PRUNERS, SAMPLERS, SweepSpec
from backend.task_metrics import all_metric_names
from webui.context import AppContext, caller
from webui.empty import empty_figure, empty_table
from webui.formats import format_duration
from webui.forms import options_from
from webui.i18n import say, t
from webui.lanes import JOBS, STATUS
from webui.refusals import KEEP, LINE, on_refusal
from webui.sent import SentMemory
from webui.tab import Controls, Page, Tab

REFRESH_S = 2.0
EXAMPLE_SPACE = "learning_rate: [1.0e-4, 5.0e-4]\nlora_rank: [4, 8]\n"
ALL_METRICS = list(all_metric_names())
DEFAULT = SweepSpec(base={}, space={})  # the form starts where a spec that names nothing would
TRIAL_COLUMNS = ["trial", "best", "run_id", "status", "value", "step", "duration", "machine", "params"]
FIGURES = ("history", "parallel", "importance")


def trials_frame(report: dict | None) -> pd.DataFrame:
    if not report or not report["trials"]:
        return empty_table("empty.sweep_trials")
    best = (report["best"] or {}).get("run_id")
    rows = [
        {
            "trial": t["number"],
            "best": "★" if best and t["run_id"] == best else "",
            "run_id": t["run_id"] or "",
            "status": t["status"],
            "value": round(t["value"], 4) if t["value"] is not None else None,
            "step": t["step"],
            "duration": format_duration(t["duration_s"]),
            "machine": t.get("machine") or "",
            "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()),
        }
        for t in report["trials"]
    ]
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def summary_html(report: dict | None) -> str:
    if not report:
        return f"<div id='sweep-summary' data-status=''>{html.escape(say('msg.sweep_none'))}</div>"
    trials = report["trials"]
    ended = sum(t["status"] not in ("queued", "running", "lost") for t in trials)
    counts = ", ".join(f"{n} {s}" for s in ("completed", "pruned", "failed", "aborted", "lost")
                       if (n := sum(t["status"] == s for t in trials)))  # fmt: skip
    best = report["best"]
    best_line = (
        say(
            "msg.sweep_best",
            run=html.escape(best["run_id"]),
            metric=html.escape(report["metric"]),
            value=f"{best['value']:.4f}",
            params=html.escape(", ".join(f"{k}={v}" for k, v in best["params"].items())),
        )
        if best
        else html.escape(say("msg.sweep_no_best"))
    )
    error = f"<br><span class='tf-error'>{html.escape(report['error'])}</span>" if report.get("error") else ""
    best_id = html.escape(best["run_id"]) if best else ""
    return (
        f"<div id='sweep-summary' data-status='{report['status']}' data-best='{best_id}'>"
        + say(
            "msg.sweep_line",
            status=report["status"],
            ended=ended,
            total=report["n_trials"],
            counts=f" ({counts})" if counts else "",
            sampler=report["sampler"],
            direction=report["direction"],
            metric=html.escape(report["metric"]),
        )
        + f"<br>{best_line}{error}</div>"
    )


class SweepsTab(Tab):
    id = "sweeps"

    def __init__(self, ctx: AppContext, **opens: Tab):
        """opens: the tabs the best run opens in (chat, evaluate, export); each has its run picker built later."""
        super().__init__(ctx)
        self.opens = opens

    def build(self) -> Controls:
        gr.Markdown(t("ui.sweeps.intro"))
        with gr.Row():
            with gr.Column(scale=2):
                self._spec()
            with gr.Column(scale=3):
                self._view()
        self.timer = gr.Timer(REFRESH_S)
        self.known = gr.State([])  # the sweep ids the list shows: its choices change only when these do
        self.drawn = gr.State(-1)  # completed trials when the charts were drawn: redraw only when it changes
        return {}

    def _spec(self) -> None:
        self.space = gr.Code(
            EXAMPLE_SPACE,
            language="yaml",
            label=t("ui.sweeps.space"),
            elem_id="sweep-space",
        )
        with gr.Row():
            self.sampler = gr.Radio(
                list(SAMPLERS), value=DEFAULT.sampler, label=t("ui.sweeps.sampler"), elem_id="sweep-sampler"
            )
            self.n_trials = gr.Number(
                0,
                precision=0,
                minimum=0,
                label=t("ui.sweeps.trials"),
                info=t("ui.sweeps.trials_info"),
                elem_id="sweep-trials",
            )
        with gr.Row():
            metric = t("ui.sweeps.metric")
            self.metric = gr.Dropdown(ALL_METRICS, value=DEFAULT.metric, label=metric, elem_id="sweep-metric")
            self.direction = gr.Radio(["auto", "minimize", "maximize"], value="auto", label=t("ui.sweeps.direction"))
            self.pruner = gr.Radio(
                list(PRUNERS), value=DEFAULT.pruner, label=t("ui.sweeps.pruner"), elem_id="sweep-pruner"
            )
        self.name = gr.Textbox(label=t("ui.sweeps.name"), placeholder="sweep-…", elem_id="sweep-name")
        self.start = gr.Button(t("ui.sweeps.start"), variant="primary", elem_id="sweep-start")
        self.message = gr.Markdown(elem_id="sweep-message")

    def _view(self) -> None:
        self.sweep = gr.Dropdown(label=t("ui.sweeps.sweep"), choices=[], elem_id="sweep-select")
        self.summary = gr.HTML(summary_html(None))
        # Not the page's EmptyStates: their refill on load could land after this tab's own load drew a sweep.
        self.trials = gr.Dataframe(
            trials_frame(None), label=t("ui.sweeps.trials"), interactive=False, elem_id="sweep-trials-table"
        )
        with gr.Row():
            self.abort = gr.Button(
                t("ui.sweeps.abort"), variant="stop", size="sm", interactive=False, elem_id="sweep-abort"
            )
            self.best_buttons = {
                where: gr.Button(t(f"ui.sweeps.best_{where}"), size="sm", elem_id=f"sweep-best-{where}")
                for where in self.opens
            }
        self.figures = {
            name: gr.Plot(empty_figure(f"empty.sweep_{name}"), label=t(f"ui.sweeps.{name}"), elem_id=f"sweep-{name}")
            for name in FIGURES
        }

    def connect(self, page: Page) -> None:
        spec = [self.space, self.sampler, self.n_trials, self.metric, self.direction, self.pruner, self.name]
        form = [page.form[f.name] for f in fields()]  # in the order options_from reads them
        self.start.click(self.on_start, [*spec, *form], [self.sweep, self.known, self.message], **JOBS)
        self.abort.click(self.on_abort, self.sweep, self.message, **JOBS)
        view = [self.summary, self.trials, *self.figures.values(), self.drawn, self.abort]
        sent = SentMemory()
        sent.redraw_on(self.sweep.change, self.on_pick, [self.sweep], view)
        sent.tick(self.timer, self.on_tick, [self.sweep, self.drawn], view)
        # The list follows by itself, as the Runs tab's does: a sweep started from the API or a terminal appears.
        self.timer.tick(self.follow_list, self.known, [self.sweep, self.known], show_progress="hidden", **STATUS)
        sent.redraw_on(self.ctx.blocks.load, self.on_load, [], [self.sweep, self.known, *view])
        for where, button in self.best_buttons.items():
            picker = getattr(self.opens[where], "target", None) or self.opens[where].run
            opened = [picker, page.tabs, self.message]  # its progress on the message, not the tab strip
            button.click(self._opener(where), self.sweep, opened, show_progress_on=self.message)

    @on_refusal("Cannot start the sweep", KEEP, KEEP, LINE)
    def on_start(self, space_text, sampler, n_trials, metric, direction, pruner, name, *form):
        spec = {
            "base": options_from(form),
            "space": parse_yaml(space_text or "", "search space"),
            "sampler": sampler,
            "metric": metric,
            "pruner": pruner,
        }
        if n_trials:
            spec["n_trials"] = int(n_trials)
        if direction != "auto":
            spec["direction"] = direction
        if name and name.strip():
            spec["name"] = name.strip()
        sweep_id = self.ctx.gate.start_sweep(caller(), self.ctx.sweeps, spec)
        known = self.ctx.sweeps.sweep_ids()
        return gr.update(choices=known, value=sweep_id), known, say("msg.sweep_started", sweep=sweep_id)

    @on_refusal("Cannot abort")
    def on_abort(self, sweep_id):
        if not sweep_id:
            return say("msg.sweep_select_to_abort")
        self.ctx.gate.abort_sweep(caller(), self.ctx.sweeps, sweep_id)
        return say("msg.sweep_aborted", sweep=sweep_id)

    def on_pick(self, sweep_id):
        return self._view_of(sweep_id, -1)

    def on_tick(self, sweep_id, drawn):
        return self._view_of(sweep_id, drawn)

    @on_refusal(None, summary_html(None), trials_frame(None), KEEP, KEEP, KEEP, KEEP, gr.update(interactive=False))
    def _view_of(self, sweep_id, drawn):
        if not sweep_id:
            empty = [empty_figure(f"empty.sweep_{name}") for name in FIGURES]
            return summary_html(None), trials_frame(None), *empty, -1, gr.update(interactive=False)
        report = self.ctx.sweeps.status(sweep_id)
        completed = sum(t["status"] == "completed" for t in report["trials"])
        if completed == drawn:
            charts = [gr.update()] * len(FIGURES)
        else:
            figures = self.ctx.sweeps.figures(sweep_id)
            charts = [figures[name] or empty_figure(f"empty.sweep_{name}") for name in FIGURES]
        running = gr.update(interactive=report["status"] == "running")  # only a running sweep has a trial to stop
        return summary_html(report), trials_frame(report), *charts, completed, running

    def on_load(self):
        """The newest sweep picked and drawn, and the hints written in the page's language."""
        choices = self.ctx.sweeps.sweep_ids()
        picked = choices[0] if choices else None
        return gr.update(choices=choices, value=picked), choices, *self._view_of(picked, -1)

    def follow_list(self, previous):
        # Only the choices, and only when they change: setting the value could swallow a pick in flight.
        choices = self.ctx.sweeps.sweep_ids()
        return (gr.update(choices=choices), choices) if choices != previous else (gr.update(), gr.update())

    def _opener(self, where: str):
        @on_refusal(f"Cannot open the best run in {where.title()}", KEEP, KEEP, LINE)
        def open_best(sweep_id):
            if not sweep_id:
                return gr.update(), gr.update(), say("msg.sweep_select_first")
            best = self.ctx.sweeps.status(sweep_id)["best"]
            if not best:
                return gr.update(), gr.update(), say("msg.sweep_nothing_completed")
            choices = self.ctx.chat.targets() if where == "chat" else self.ctx.jobs.finished_runs()
            return gr.update(choices=choices, value=best["run_id"]), gr.Tabs(selected=where), ""

        return open_best
