"""Evaluate tab: did fine-tuning help? Generation metrics against the base model, or classification scores."""

from __future__ import annotations

import tempfile
from functools import partial
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.access.uploads import safe_name, store_upload
from backend.data.readers import SUPPORTED_SUFFIXES
from backend.errors import TuneForgeError
from backend.evaluation.eval_jobs import EvalJobs
from backend.evaluation.evaluate import Evaluator, write_table
from backend.serving.chat import BASE
from backend.task_metrics import CLASSIFICATION_SCORES
from webui.charts import confusion_figure, loss_figure, roc_figure
from webui.context import AppContext
from webui.empty import empty_figure, empty_table, fitted
from webui.eval_jobs_view import EvalJobsView
from webui.formats import format_duration
from webui.i18n import headed, say, t
from webui.lanes import DEVICE, STATUS
from webui.refusals import on_refusal, on_refusal_raise, on_refusal_warn
from webui.tab import Controls, Page, Tab

NO_CHART = partial(empty_figure, "empty.eval_chart")
SUMMARY_COLUMNS = ["run_id", "task", "status", "train_loss", "eval_loss", "accuracy", "f1_macro", "global_step"]


def runs_summary(ctx: AppContext) -> pd.DataFrame:
    if not ctx.jobs.list_runs():
        return empty_table("empty.eval_runs")
    rows = []
    for run in ctx.jobs.list_runs():
        end = next((e for e in reversed(ctx.jobs.events(run["run_id"])) if e["type"] == "end"), {})
        task = ctx.jobs.config(run["run_id"]).get("task", "sft")
        rows.append(
            {**{k: end.get(k) for k in SUMMARY_COLUMNS}, "run_id": run["run_id"], "task": task, "status": run["status"]}
        )
    return headed(pd.DataFrame(rows, columns=SUMMARY_COLUMNS).round(4))


def scores_table(metrics: dict) -> pd.DataFrame:
    keys = [*CLASSIFICATION_SCORES, "eval_loss"]
    rows = [{"metric": k, "value": metrics.get(k)} for k in keys]
    rows += [
        {
            "metric": f"{label}: precision / recall / F1",
            "value": f"{s['precision']:.3f} / {s['recall']:.3f} / {s['f1']:.3f}",
        }
        for label, s in metrics.get("per_class", {}).items()
    ]
    return headed(pd.DataFrame(rows))


def generation_view() -> tuple:
    """A run without classification scores: the generation tools shown, the scores hidden and empty."""
    return gr.update(visible=True), gr.update(visible=False), None, None, None


class EvaluateTab(Tab):
    id = "evaluate"

    def __init__(self, ctx: AppContext, evaluator: Evaluator, evals: EvalJobs | None = None):
        super().__init__(ctx)
        self.evaluator = evaluator
        self.jobs_view = EvalJobsView(ctx, evals or EvalJobs(ctx.jobs))  # benchmarks and the judge

    def build(self) -> Controls:
        gr.Markdown(t("ui.evaluate.intro"))
        self.run = gr.Dropdown(label=t("ui.run"), choices=[], elem_id="eval-run", info=t("ui.evaluate.run_info"))
        self.summary = gr.Dataframe(
            runs_summary(self.ctx),
            label=t("ui.evaluate.runs"),
            interactive=False,
            elem_id="eval-table",
            elem_classes="tf-table",
        )
        self.chart = self.ctx.empty.chart("empty.eval_chart", label=t("ui.evaluate.chart"), elem_id="eval-chart")
        with gr.Group(visible=True) as self.generation:
            self._generation_settings()
            self._generation_results()
        with gr.Group(visible=False) as self.classification:
            self._classification()
        self.jobs_view.build()
        return {}

    def _generation_settings(self) -> None:
        with gr.Row():
            self.dataset = gr.Textbox(
                label=t("ui.evaluate.dataset"), placeholder=t("ui.evaluate.dataset_placeholder"), scale=3
            )
            self.max_rows = gr.Slider(
                1,
                500,
                value=20,
                step=1,
                label=t("ui.evaluate.rows"),
                info=t("ui.evaluate.rows_info"),
                elem_id="eval-max-rows",
            )
            self.max_new = gr.Slider(
                8,
                512,
                value=64,
                step=8,
                label=t("ui.max_new_tokens"),
                info=t("ui.evaluate.max_new_info"),
                elem_id="eval-max-new",
            )
            self.temperature = gr.Slider(
                0.0, 1.5, value=0.0, step=0.05, label=t("ui.temperature"), info=t("ui.evaluate.temperature_info")
            )
        with gr.Row():
            self.evaluate = gr.Button(t("ui.evaluate.evaluate"), variant="primary", elem_id="evaluate-btn")
            self.forgetting = gr.Button(t("ui.evaluate.forgetting"), elem_id="forgetting-btn")

    def _generation_results(self) -> None:
        empty = self.ctx.empty
        self.comparison = empty.table("empty.comparison", label=t("ui.evaluate.comparison"), elem_id="eval-comparison")
        self.forgetting_note = gr.Markdown(elem_id="forgetting-note")
        self.predictions = empty.table(
            "empty.predictions", label=t("ui.evaluate.predictions"), wrap=True, elem_id="eval-rows"
        )
        self.downloads = gr.File(
            label=t("ui.evaluate.downloads"), file_count="multiple", interactive=False, elem_id="eval-downloads"
        )
        with gr.Accordion(t("ui.evaluate.batch"), open=False):
            self.prompts = gr.File(
                label=t("ui.evaluate.prompts"), file_types=list(SUPPORTED_SUFFIXES), elem_id="batch-prompts"
            )
            self.batch = gr.Button(t("ui.evaluate.predict"), size="sm", elem_id="batch-btn")
            self.batch_out = gr.File(
                label=t("ui.evaluate.answers"), file_count="multiple", interactive=False, elem_id="batch-out"
            )

    def _classification(self) -> None:
        empty = self.ctx.empty
        self.scores = gr.Dataframe(
            empty_table("empty.scores"),
            label=t("ui.evaluate.scores"),
            interactive=False,
            elem_id="cls-scores",
            elem_classes="tf-table",
        )
        with gr.Row():
            self.confusion = gr.Plot(label=t("chart.confusion"), elem_id="confusion-plot")
            self.roc = gr.Plot(label=t("chart.roc"), elem_id="roc-plot")
        self.compare_cls = gr.Button(t("ui.evaluate.compare_cls"), elem_id="cls-compare-btn")
        self.cls_comparison = empty.table(
            "empty.cls_comparison", label=t("ui.evaluate.comparison"), elem_id="cls-comparison"
        )
        with gr.Row():
            self.text = gr.Textbox(label=t("ui.evaluate.classify_text"), elem_id="cls-text", scale=3)
            self.classify = gr.Button(t("ui.evaluate.classify"), elem_id="cls-btn", scale=1)
        self.probabilities = gr.Label(label=t("ui.evaluate.probabilities"), elem_id="cls-probs")

    def timers(self) -> list[gr.Timer]:
        return [self.jobs_view.timer]

    def connect(self, page: Page) -> None:
        run, shown = self.run, [self.chart, self.generation, self.classification, self.scores, self.confusion, self.roc]
        settings = [run, self.dataset, self.max_rows, self.max_new, self.temperature]
        view = self.jobs_view
        refreshed = [self.summary, run, view.models, view.judge_a, view.judge_b]
        self.ctx.blocks.load(self.on_refresh, run, refreshed)
        self.item.select(self.on_refresh, run, refreshed, **STATUS)
        page.finished.change(self.on_refresh, run, refreshed, **STATUS)
        view.connect()
        # Its progress on the chart, not on the two groups it shows or hides (webui/progress_targets.py).
        run.change(self.on_run, run, shown, show_progress_on=self.chart)
        self.evaluate.click(self.on_evaluate, settings, [self.comparison, self.predictions, self.downloads], **DEVICE)
        self.forgetting.click(self.on_forgetting, run, self.forgetting_note, **DEVICE)
        self.batch.click(self.on_batch, [run, self.prompts], self.batch_out, **DEVICE)
        self.classify.click(self.on_classify, [run, self.text], self.probabilities, **DEVICE)
        self.compare_cls.click(self.on_compare_classification, run, self.cls_comparison, **DEVICE)
        self.text.submit(self.on_classify, [run, self.text], self.probabilities, **DEVICE)

    def on_refresh(self, run_id=None):
        """The runs, and the list to pick from: with nothing picked yet, the newest completed run is picked."""
        finished = self.ctx.jobs.finished_runs()
        picked = run_id or (finished[0] if finished else None)
        pickers = self.jobs_view.choices(finished)
        return runs_summary(self.ctx), gr.update(choices=["base", *finished], value=picked), *pickers

    @on_refusal_warn(NO_CHART, *generation_view())
    def on_run(self, run_id):
        if not run_id or run_id == BASE:
            return NO_CHART(), *generation_view()
        chart = loss_figure(self.ctx.jobs.events(run_id), say("chart.train_vs_validation")) or NO_CHART()
        if self.ctx.jobs.config(run_id).get("task") != "classification":
            return chart, *generation_view()
        metrics = self._saved_scores(run_id)
        confusion = confusion_figure(metrics["confusion_matrix"], metrics["labels"])
        roc = roc_figure(metrics.get("roc_curve", {}), metrics.get("roc_auc"))
        return chart, gr.update(visible=False), gr.update(visible=True), scores_table(metrics), confusion, roc

    def _saved_scores(self, run_id: str) -> dict:
        try:
            return self.evaluator.classification_metrics(run_id)
        except FileNotFoundError as exc:  # a classification run that ended before it wrote metrics.json
            raise TuneForgeError(str(exc)) from None

    @on_refusal_raise()
    def on_evaluate(self, run_id, dataset, max_rows, max_new, temperature, progress=gr.Progress()):
        def report(done, total, eta):
            progress(done / total, desc=f"generating {done}/{total} · ETA {format_duration(eta)}")

        if not run_id:
            raise TuneForgeError("pick a run first")  # the page shows it in its language (lines.pick_a_run)
        options = {"dataset": dataset or None, "max_rows": int(max_rows), "max_new_tokens": int(max_new)}
        options.update(temperature=float(temperature), progress=report)

        def scored(person):
            if run_id == BASE:
                result = self.evaluator.evaluate_generation(BASE, **options)
                return result, pd.DataFrame([{"metric": k, "base": v} for k, v in result["metrics"].items()])
            result = self.evaluator.compare_with_base(run_id, **options)
            return result, headed(pd.DataFrame(result["comparison"]))

        data = self.ctx.gate.evaluation_data(run_id, dataset)
        result, table = self.ctx.act("evaluate", scored, run_id=run_id, options=data)
        out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-eval-"))
        files = write_table(result["rows"], out_dir, f"eval-{run_id}") if result["rows"] else None
        rows = headed(pd.DataFrame(result["rows"])) if result["rows"] else empty_table("empty.predictions")
        return table.round(3), fitted(rows), [str(f) for f in files or []]

    @on_refusal("Cannot check")
    def on_forgetting(self, run_id):
        if not run_id or run_id == BASE:
            raise TuneForgeError("pick a fine-tuned run to compare with its base model")
        result = self.ctx.act("evaluate", lambda person: self.evaluator.forgetting(run_id), run_id=run_id)
        verdict = say("msg.forgetting_yes") if result["change_pct"] > 10 else say("msg.forgetting_no")
        change = f"{result['change_pct']:+.1f}%"
        return say(
            "msg.forgetting",
            base=f"{result['base']:.2f}",
            tuned=f"{result['tuned']:.2f}",
            change=change,
            verdict=verdict,
        )

    @on_refusal_raise()
    def on_batch(self, run_id, file):
        if file is None:
            raise TuneForgeError("upload a file of prompts first")

        def predict(person):
            stored = store_upload(file, self.ctx.gate.uploads_dir(person))  # an upload's checks: type, file, name
            out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-predict-"))
            return [str(p) for p in self.evaluator.batch_predict(run_id or BASE, stored, out_dir)]

        details = {"file": safe_name(Path(str(file)).name)}
        return self.ctx.act("batch_predict", predict, run_id=run_id or None, details=details)

    @on_refusal_raise()
    def on_compare_classification(self, run_id):
        data = self.ctx.gate.evaluation_data(run_id)
        work = lambda person: self.evaluator.compare_classification(run_id)  # noqa: E731
        result = self.ctx.act("evaluate", work, run_id=run_id, options=data)
        return headed(pd.DataFrame(result["comparison"]).round(3))

    @on_refusal_raise()
    def on_classify(self, run_id, text):
        work = lambda person: self.evaluator.predict_class(str(run_id or ""), text)  # noqa: E731
        return self.ctx.act("classify", work, run_id=str(run_id or "")[:200] or None)
