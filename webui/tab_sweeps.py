"""Sweeps tab: search the form's hyperparameters with Optuna, watch the trials, open the best run."""

from __future__ import annotations

import html

import gradio as gr
import pandas as pd

from backend.config import fields, parse_yaml
from backend.sweeps.spec import METRICS, PRUNERS, SAMPLERS
from webui.context import AppContext, caller
from webui.formats import format_duration
from webui.forms import options_from
from webui.lanes import JOBS, STATUS
from webui.refusals import KEEP, LINE, on_refusal
from webui.tab import Controls, Page, Tab

REFRESH_S = 2.0
EXAMPLE_SPACE = "learning_rate: [1.0e-4, 5.0e-4]\nlora_rank: [4, 8]\n"
ALL_METRICS = list(dict.fromkeys(m for metrics in METRICS.values() for m in metrics))
TRIAL_COLUMNS = ["trial", "best", "run_id", "status", "value", "step", "duration", "params"]
FIGURES = (("history", "Optimisation history"), ("parallel", "Parallel coordinates"), ("importance", "Importance"))


def trials_frame(report: dict | None) -> pd.DataFrame:
    if not report:
        return pd.DataFrame(columns=TRIAL_COLUMNS)
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
            "params": ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}" for k, v in t["params"].items()),
        }
        for t in report["trials"]
    ]
    return pd.DataFrame(rows, columns=TRIAL_COLUMNS)


def summary_html(report: dict | None) -> str:
    if not report:
        return "<div id='sweep-summary' data-status=''>No sweep selected.</div>"
    trials = report["trials"]
    ended = sum(t["status"] not in ("queued", "running") for t in trials)
    counts = ", ".join(f"{n} {s}" for s in ("completed", "pruned", "failed", "aborted")
                       if (n := sum(t["status"] == s for t in trials)))  # fmt: skip
    best = report["best"]
    best_line = (
        f"Best: run <code>{html.escape(best['run_id'])}</code>, {html.escape(report['metric'])} "
        f"<b>{best['value']:.4f}</b> ({html.escape(', '.join(f'{k}={v}' for k, v in best['params'].items()))})"
        if best
        else "No completed trial yet."
    )
    error = f"<br><span class='tf-error'>{html.escape(report['error'])}</span>" if report.get("error") else ""
    best_id = html.escape(best["run_id"]) if best else ""
    return (
        f"<div id='sweep-summary' data-status='{report['status']}' data-best='{best_id}'>"
        f"<b>{report['status']}</b> · {ended}/{report['n_trials']} trials ended"
        f"{' (' + counts + ')' if counts else ''} · {report['sampler']} sampler, {report['direction']} "
        f"{html.escape(report['metric'])}<br>{best_line}{error}</div>"
    )


class SweepsTab(Tab):
    id = "sweeps"

    def __init__(self, ctx: AppContext, **opens: Tab):
        """opens: the tabs the best run opens in (chat, evaluate, export); each has its run picker built later."""
        super().__init__(ctx)
        self.opens = opens

    def build(self) -> Controls:
        gr.Markdown(
            "Search the form's options with [Optuna](https://optuna.org): each trial is an ordinary run of the "
            "options on the Dataset, Model and Train tabs with the searched ones changed, queued one after another. "
            "A trial whose validation metric is worse than earlier trials' at the same step is **pruned** (stopped "
            "early). The study is kept in the workspace, so a sweep goes on after the app restarts."
        )
        with gr.Row():
            with gr.Column(scale=2):
                self._spec()
            with gr.Column(scale=3):
                self._view()
        self.timer = gr.Timer(REFRESH_S)
        self.drawn = gr.State(-1)  # completed trials when the charts were drawn: redraw only when it changes
        return {}

    def _spec(self) -> None:
        self.space = gr.Code(
            EXAMPLE_SPACE,
            language="yaml",
            label="Search space: option: [values], or option: {low: 1.0e-5, high: 1.0e-3, log: true} for a range",
            elem_id="sweep-space",
        )
        with gr.Row():
            self.sampler = gr.Radio(list(SAMPLERS), value="grid", label="Sampler", elem_id="sweep-sampler")
            self.n_trials = gr.Number(
                0, precision=0, minimum=0, label="Trials", info="0: the whole grid (else 8)", elem_id="sweep-trials"
            )
        with gr.Row():
            self.metric = gr.Dropdown(ALL_METRICS, value="eval_loss", label="Metric", elem_id="sweep-metric")
            self.direction = gr.Radio(["auto", "minimize", "maximize"], value="auto", label="Direction")
            self.pruner = gr.Radio(list(PRUNERS), value="median", label="Pruner", elem_id="sweep-pruner")
        self.name = gr.Textbox(label="Name (optional)", placeholder="empty: a new sweep id", elem_id="sweep-name")
        self.start = gr.Button("Start sweep", variant="primary", elem_id="sweep-start")
        self.message = gr.Markdown(elem_id="sweep-message")

    def _view(self) -> None:
        with gr.Row():
            self.sweep = gr.Dropdown(label="Sweep", choices=[], elem_id="sweep-select", scale=3)
            self.reload = gr.Button("↻ sweeps", size="sm", scale=0)
        self.summary = gr.HTML(summary_html(None))
        self.trials = gr.Dataframe(trials_frame(None), label="Trials", interactive=False, elem_id="sweep-trials-table")
        with gr.Row():
            self.abort = gr.Button("Abort sweep", variant="stop", size="sm", elem_id="sweep-abort")
            self.best_buttons = {
                where: gr.Button(f"{where.title()} the best run", size="sm", elem_id=f"sweep-best-{where}")
                for where in self.opens
            }
        self.figures = {
            name: gr.Plot(None, label=label, elem_id=f"sweep-{name}", visible=True) for name, label in FIGURES
        }

    def connect(self, page: Page) -> None:
        spec = [self.space, self.sampler, self.n_trials, self.metric, self.direction, self.pruner, self.name]
        form = [page.form[f.name] for f in fields()]  # in the order options_from reads them
        self.start.click(self.on_start, [*spec, *form], [self.sweep, self.message], **JOBS)
        self.abort.click(self.on_abort, self.sweep, self.message, **JOBS)
        view = [self.summary, self.trials, *self.figures.values(), self.drawn]
        self.sweep.change(self.on_pick, self.sweep, view, **STATUS)
        self.timer.tick(self.on_tick, [self.sweep, self.drawn], view, show_progress="hidden", **STATUS)
        self.reload.click(self.sweep_choices, None, self.sweep)
        self.ctx.blocks.load(self.sweep_choices, None, self.sweep)
        for where, button in self.best_buttons.items():
            picker = getattr(self.opens[where], "target", None) or self.opens[where].run
            button.click(self._opener(where), self.sweep, [picker, page.tabs, self.message])

    @on_refusal("Cannot start the sweep", KEEP, LINE)
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
        picked = gr.update(choices=self.ctx.sweeps.sweep_ids(), value=sweep_id)
        return (
            picked,
            f"Started sweep `{sweep_id}`: its trials queue one after another, and keep going if you close this page.",
        )

    @on_refusal("Cannot abort")
    def on_abort(self, sweep_id):
        if not sweep_id:
            return "Select a sweep to abort."
        self.ctx.gate.abort_sweep(caller(), self.ctx.sweeps, sweep_id)
        return f"Sweep `{sweep_id}` aborted; its finished trials stay."

    def on_pick(self, sweep_id):
        return self._view_of(sweep_id, -1)

    def on_tick(self, sweep_id, drawn):
        return self._view_of(sweep_id, drawn)

    @on_refusal(None, summary_html(None), trials_frame(None), KEEP, KEEP, KEEP, KEEP)
    def _view_of(self, sweep_id, drawn):
        if not sweep_id:
            return summary_html(None), trials_frame(None), None, None, None, -1
        report = self.ctx.sweeps.status(sweep_id)
        completed = sum(t["status"] == "completed" for t in report["trials"])
        if completed == drawn:
            charts = [gr.update()] * len(FIGURES)
        else:
            figures = self.ctx.sweeps.figures(sweep_id)
            charts = [figures[name] for name, _ in FIGURES]
        return summary_html(report), trials_frame(report), *charts, completed

    def sweep_choices(self):
        choices = self.ctx.sweeps.sweep_ids()
        return gr.update(choices=choices, value=choices[0] if choices else None)

    def _opener(self, where: str):
        @on_refusal(f"Cannot open the best run in {where.title()}", KEEP, KEEP, LINE)
        def open_best(sweep_id):
            if not sweep_id:
                return gr.update(), gr.update(), "Select a sweep first."
            best = self.ctx.sweeps.status(sweep_id)["best"]
            if not best:
                return gr.update(), gr.update(), "No trial of this sweep has completed yet."
            choices = self.ctx.chat.targets() if where == "chat" else self.ctx.jobs.finished_runs()
            return gr.update(choices=choices, value=best["run_id"]), gr.Tabs(selected=where), ""

        return open_best
