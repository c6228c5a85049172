"""The TuneForge app: tabs in the order a person works; the named API endpoints it registers live in webui/api.py."""

from __future__ import annotations

import gradio as gr

from backend.access.gate import Gate
from backend.evaluation.eval_jobs import EvalJobs
from backend.evaluation.evaluate import Evaluator
from backend.recipes.jobs import RecipeJobs
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from backend.sweeps.sweep_manager import SweepManager
from webui.api import register_api, register_eval_api, register_recipe_api, register_sweep_api
from webui.context import AppContext, caller
from webui.edge import guard
from webui.i18n import HEAD, I18N, say, t
from webui.lanes import FOLLOW, STATUS
from webui.open_tab_timers import tick_while_open
from webui.progress_targets import narrow
from webui.tab import Page
from webui.tab_chat import ChatTab
from webui.tab_dataset import DatasetTab
from webui.tab_evaluate import EvaluateTab
from webui.tab_export import ExportTab
from webui.tab_model import ModelTab
from webui.tab_recipes import RecipesTab
from webui.tab_runs import RunsTab
from webui.tab_sweeps import SweepsTab
from webui.tab_train import TrainTab

CSS = """
.tf-bar { height: 14px; background: var(--neutral-200); border-radius: 7px; overflow: hidden; }
.tf-fill { height: 100%; background: #d97706; transition: width .4s; }
.tf-progress-text { margin-top: 6px; font-size: 0.95em; }
.tf-error { color: #b91c1c; }
/* Tables: a column as wide as its content, and headers broken between words, never inside one. */
.tf-table th, .tf-table thead td { word-break: keep-all; overflow-wrap: normal; hyphens: none; white-space: nowrap; }
.tf-table td { min-width: 4em; }
.tf-empty { color: var(--body-text-color-subdued); font-style: italic; padding: 0.6em 0; }
"""

# Everything `launch()` takes for the page to look and speak as designed: launch.py and the screenshots use it.
PAGE = {"css": CSS, "i18n": I18N, "head": HEAD}


def build_app(
    jobs: JobManager, chat: ChatEngine, sweeps: SweepManager | None = None, gate: Gate | None = None
) -> gr.Blocks:
    """sweeps: the app's sweep manager (default: one on the workspace's own study storage);
    gate: who may do what (default: one person, an admin, as an app without logins is)."""
    sweeps = sweeps or SweepManager(jobs)
    gate = gate or Gate(jobs)
    with gr.Blocks(title="TuneForge") as blocks:
        ctx = AppContext(jobs=jobs, chat=chat, blocks=blocks, sweeps=sweeps, gate=gate)
        recipes = RecipeJobs(jobs)
        evaluator, exporter, evals = Evaluator(jobs, chat), Exporter(jobs), EvalJobs(jobs)
        train, evaluate, chat_tab, export = (
            TrainTab(ctx),
            EvaluateTab(ctx, evaluator, evals),
            ChatTab(ctx),
            ExportTab(ctx, exporter),
        )
        tabs = [
            DatasetTab(ctx),
            RecipesTab(ctx, recipes),
            ModelTab(ctx),
            train,
            evaluate,
            chat_tab,
            RunsTab(ctx, train),
            SweepsTab(ctx, evaluate=evaluate, chat=chat_tab, export=export),
            export,
        ]
        gr.Markdown(t("ui.app.heading"), elem_id="app-heading")
        signed_in = gr.Markdown(elem_id="signed-in")

        def whoami() -> str:
            return identity_line(gate, caller())

        blocks.load(whoami, None, signed_in, **STATUS)
        form = {}
        with gr.Tabs() as strip:
            for tab in tabs:
                with gr.Tab(t(f"tabs.{tab.id}"), id=tab.id, elem_id=f"tab-{tab.id}") as tab.item:
                    form.update(tab.build())
        page = Page(tabs=strip, form=form, finished=watch_finished(jobs))
        for tab in tabs:
            tab.connect(page)
        tick_while_open(tabs)
        ctx.empty.connect(blocks)
        register_api(gate, chat, evaluator, exporter)
        register_sweep_api(gate, sweeps)
        register_recipe_api(gate, recipes)
        register_eval_api(gate, evals)
    narrow(blocks)  # progress only where someone waits: webui/progress_targets.py
    guard(blocks, gate)  # every endpoint's input checked before it runs (webui/edge.py)
    return blocks


FINISHED_CHECK_S = 4.0  # on every tab; each tick is a message the whole page processes: webui/idle_cost.py


def watch_finished(jobs: JobManager) -> gr.State:
    """The completed runs' ids, read every few seconds; the state changes (and its lists follow) only when they do."""
    finished, timer = gr.State([]), gr.Timer(FINISHED_CHECK_S)

    def check(previous):
        now = jobs.finished_runs()
        return now if now != previous else gr.update()

    timer.tick(check, finished, finished, show_progress="hidden", **FOLLOW)  # queued: webui/lanes.py
    return finished


def identity_line(gate: Gate, username: str | None) -> str:
    """Who is signed in and what they may do; nothing in an app without logins."""
    if not gate.shared:
        return ""
    role = gate.person(username).role
    return say("msg.signed_in", user=username, role=role.value, may=say(f"msg.may_{role.value}"))
