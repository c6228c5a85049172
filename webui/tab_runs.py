"""Runs tab: every run in the workspace, the queue, A/B comparison, three-way chat, clone and resume."""

from __future__ import annotations

import time

import gradio as gr
import pandas as pd

from backend.access.roles import Role
from backend.config import fields
from backend.errors import TuneForgeError
from backend.runs.compare import differing_options, final_metrics
from backend.serving.adapters import import_adapter
from backend.serving.chat import BASE
from webui.charts import compare_figure
from webui.context import AppContext, caller
from webui.empty import empty_table
from webui.formats import format_duration
from webui.forms import form_updates, kept_notes
from webui.i18n import headed, say, t
from webui.lanes import DEVICE, JOBS, STATUS
from webui.pacing import paced
from webui.refusals import KEEP, LINE, on_refusal, stream_with_refusal
from webui.sent import SentMemory
from webui.tab import Controls, Page, Tab
from webui.tab_train import TrainTab

HISTORY_COLUMNS = [
    "run_id",
    "status",
    "owner",
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
    "sweep",
]
AUDIT_COLUMNS = ["time", "user", "action", "run_id", "result"]
AUDIT_LINES = 200
AUDIT_MAX_PAGE = 100_000
REFRESH_S = 2.0
ANSWERS = ("base", "a", "b")


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
    return headed(pd.DataFrame(rows, columns=HISTORY_COLUMNS)) if rows else empty_table("empty.runs")


def first(chosen) -> str:
    """The run that Open, Clone, Resume and Cancel act on."""
    if not chosen:
        raise TuneForgeError("select a run first")
    return chosen[0]


class RunsTab(Tab):
    id = "runs"

    def __init__(self, ctx: AppContext, train: TrainTab):
        super().__init__(ctx)
        self.train = train  # Open shows the run in its live view

    def build(self) -> Controls:
        gr.Markdown(t("ui.runs.intro"))
        self.history = gr.Dataframe(
            history_frame(self.ctx), interactive=False, elem_id="runs-history", wrap=True, elem_classes="tf-table"
        )
        self._selection()
        self.message = gr.Markdown(elem_id="runs-message")
        empty = self.ctx.empty
        self.chart = empty.chart("empty.compare_chart", label=t("chart.loss_by_run"), elem_id="compare-chart")
        with gr.Row():
            self.diff = empty.table("empty.diff", label=t("ui.runs.diff"), elem_id="compare-diff")
            self.metrics = empty.table("empty.metrics", label=t("ui.runs.metrics"), elem_id="compare-metrics")
        self._three_way()
        self.known = gr.State([])  # the run ids the selection offers, so a refresh changes it only when they change
        self._importer()
        with gr.Accordion(
            t("ui.runs.audit"),
            open=False,
            visible=False,
            elem_id="audit-accordion",
        ) as self.audit_box:
            self.audit_page = gr.Number(
                1, minimum=1, maximum=AUDIT_MAX_PAGE, precision=0, label=t("ui.runs.audit_page"), elem_id="audit-page"
            )
            self.audit = gr.Dataframe(
                pd.DataFrame(columns=AUDIT_COLUMNS), interactive=False, wrap=True, elem_id="audit-log"
            )
        self.timer = gr.Timer(REFRESH_S)
        return {}

    def _selection(self) -> None:
        with gr.Row():
            self.selected = gr.Dropdown(
                label=t("ui.runs.selected"),
                choices=[r["run_id"] for r in self.ctx.jobs.list_runs()],
                multiselect=True,
                elem_id="runs-selected",
                scale=4,
                info=t("ui.runs.selected_info"),
            )
            self.compare = gr.Button(t("ui.runs.compare"), variant="primary", elem_id="runs-compare", scale=1)
        with gr.Row():
            self.open = gr.Button(t("ui.runs.open"), size="sm", elem_id="runs-open")
            self.clone = gr.Button(t("ui.runs.clone"), size="sm", elem_id="runs-clone")
            self.resume = gr.Button(t("ui.runs.resume"), size="sm", elem_id="runs-resume")
            self.cancel = gr.Button(t("ui.runs.cancel"), size="sm", variant="stop", elem_id="runs-cancel")

    def _three_way(self) -> None:
        with gr.Accordion(t("ui.runs.three_way"), open=False):
            self.prompt = gr.Textbox(
                label=t("ui.runs.prompt"), placeholder="What is your name?", elem_id="three-way-prompt"
            )
            self.ask = gr.Button(t("ui.runs.ask"), elem_id="three-way-ask")
            with gr.Row():
                self.answers = [
                    gr.Textbox(label=t(f"ui.runs.answer_{key}"), lines=6, interactive=False, elem_id=f"three-way-{key}")
                    for key in ANSWERS
                ]

    def _importer(self) -> None:
        with gr.Accordion(t("ui.runs.importer"), open=False):
            with gr.Row():
                self.adapter_dir = gr.Textbox(
                    label=t("ui.runs.adapter_dir"), placeholder="/path/to/saves/model/lora/sft", scale=3
                )
                self.adapter_name = gr.Textbox(
                    label=t("ui.runs.adapter_name"), placeholder=t("ui.runs.adapter_name_placeholder"), scale=2
                )
                self.import_btn = gr.Button(t("ui.runs.import"), scale=1, elem_id="runs-import")

    def connect(self, page: Page) -> None:
        form = [page.form[f.name] for f in fields()]
        listing = [self.history, self.selected, self.known]
        sent = SentMemory()
        sent.tick(self.timer, self.refresh, [self.known], listing)
        sent.redraw_on(self.ctx.blocks.load, self.refresh, [self.known], listing)
        sent.redraw_on(self.item.select, self.refresh, [self.known], listing)
        self.ctx.blocks.load(self.on_audit, None, [self.audit_box, self.audit], **STATUS)
        self.audit_box.expand(self.on_audit, None, [self.audit_box, self.audit], **STATUS)
        self.audit_page.change(self.on_audit_page, self.audit_page, self.audit, **STATUS)
        self.compare.click(self.on_compare, self.selected, [self.chart, self.diff, self.metrics, self.message])
        # Their progress on the message alone, never on the tab strip or the form (webui/progress_targets.py).
        on_message = {"show_progress_on": self.message}
        self.open.click(self.on_open, self.selected, [self.train.run, page.tabs, self.message], **on_message)
        self.clone.click(self.on_clone, self.selected, [*form, page.tabs, self.message], **on_message)
        self.resume.click(self.on_resume, self.selected, self.message, **JOBS)
        self.cancel.click(self.on_cancel, self.selected, self.message, **JOBS)
        self.ask.click(self.on_ask, [self.prompt, self.selected], self.answers, **DEVICE)
        self.import_btn.click(self.on_import, [self.adapter_dir, self.adapter_name], self.message, **JOBS)

    def refresh(self, previous):
        # Only the choices, and only when they change: re-rendering the open list, or setting the
        # value, could swallow a pick made while the refresh was in flight.
        runs = [r["run_id"] for r in self.ctx.jobs.list_runs()]
        return history_frame(self.ctx), gr.update(choices=runs) if runs != previous else gr.update(), runs

    def on_audit(self):
        """The audit log, shown to an admin of a studio with logins; nobody else sees the accordion."""
        gate = self.ctx.gate
        if not gate.shared or self.ctx.person().role is not Role.ADMIN:
            return gr.update(visible=False), None
        return gr.update(visible=True), self.on_audit_page(1)

    def on_audit_page(self, page):
        """One page of the audit log, read from the file's end (page 1: the newest); an admin's only."""
        gate = self.ctx.gate
        if not gate.shared or self.ctx.person().role is not Role.ADMIN:
            return None
        page = int(page) if isinstance(page, (int, float)) and 1 <= page <= AUDIT_MAX_PAGE else 1
        return pd.DataFrame(gate.audit.lines(AUDIT_LINES, page), columns=AUDIT_COLUMNS)

    @on_refusal("Cannot compare", KEEP, None, None, LINE)
    def on_compare(self, chosen):
        chosen = list(chosen or [])
        if len(chosen) < 2:
            return gr.update(), gr.update(), gr.update(), say("msg.select_two_runs")
        figure = compare_figure({run_id: self.ctx.jobs.events(run_id) for run_id in chosen})
        options_rows, metric_rows = differing_options(self.ctx.jobs, chosen), final_metrics(self.ctx.jobs, chosen)
        note = "" if options_rows else say("msg.identical_options")
        diff = headed(pd.DataFrame(options_rows)) if options_rows else empty_table("empty.identical")
        return figure, diff, headed(pd.DataFrame(metric_rows)), note

    @on_refusal("Cannot open", KEEP, KEEP, LINE)
    def on_open(self, chosen):
        run_id = first(chosen)
        choices = [r["run_id"] for r in self.ctx.jobs.list_runs()]
        return gr.update(choices=choices, value=run_id), gr.Tabs(selected=self.train.id), ""

    @on_refusal("Cannot clone", *[KEEP] * len(fields()), KEEP, LINE)
    def on_clone(self, chosen):
        run_id = first(chosen)
        values, kept = form_updates(self.ctx.jobs.config(run_id))
        note = say("msg.cloned", run=run_id)
        return *values, gr.Tabs(selected=self.train.id), " ".join([note, *kept_notes(kept)])

    @on_refusal("Cannot resume")
    def on_resume(self, chosen):
        run_id = self.ctx.gate.resume(caller(), first(chosen))
        return say("msg.resumes", run=run_id)

    @on_refusal("Cannot cancel")
    def on_cancel(self, chosen):
        run_id = first(chosen)
        self.ctx.gate.abort(caller(), run_id)
        return say("msg.cancelled", run=run_id)

    def on_ask(self, question, chosen):
        chosen = list(chosen or [])
        if len(chosen) < 2:
            yield "", "", say("msg.select_a_and_b")
            return
        replies = ["", "", ""]
        # One model is in memory at a time, so the three answer in turn.
        for i, target in enumerate([BASE, chosen[0], chosen[1]]):
            stream = self.ctx.chat.stream(target, question, [], temperature=0.0, max_new_tokens=128)
            for text in paced(stream_with_refusal(stream)):
                replies[i] = text
                yield tuple(replies)

    @on_refusal("Cannot import")
    def on_import(self, folder, name):
        run_id = self.ctx.act("adapter_import", lambda person: import_adapter(self.ctx.jobs, folder, name, person.name))
        return say("msg.imported", run=run_id)
