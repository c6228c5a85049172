"""Evaluate tab: did fine-tuning help? Generation metrics against the base model, or classification scores."""

from __future__ import annotations

import tempfile
from pathlib import Path

import gradio as gr
import pandas as pd

from backend.access.uploads import store_upload
from backend.data.readers import SUPPORTED_SUFFIXES
from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator, write_table
from backend.serving.chat import BASE
from webui.charts import confusion_figure, loss_figure, roc_figure
from webui.context import AppContext
from webui.formats import format_duration
from webui.lanes import DEVICE
from webui.refusals import on_refusal, on_refusal_raise, on_refusal_warn
from webui.tab import Controls, Page, Tab

SUMMARY_COLUMNS = ["run_id", "task", "status", "train_loss", "eval_loss", "accuracy", "f1_macro", "global_step"]


def runs_summary(ctx: AppContext) -> pd.DataFrame:
    rows = []
    for run in ctx.jobs.list_runs():
        end = next((e for e in reversed(ctx.jobs.events(run["run_id"])) if e["type"] == "end"), {})
        task = ctx.jobs.config(run["run_id"]).get("task", "sft")
        rows.append(
            {**{k: end.get(k) for k in SUMMARY_COLUMNS}, "run_id": run["run_id"], "task": task, "status": run["status"]}
        )
    return pd.DataFrame(rows, columns=SUMMARY_COLUMNS).round(4)


def scores_table(metrics: dict) -> pd.DataFrame:
    keys = ["accuracy", "precision_macro", "recall_macro", "f1_macro", "roc_auc", "eval_loss"]
    rows = [{"metric": k, "value": metrics.get(k)} for k in keys]
    rows += [
        {
            "metric": f"{label}: precision / recall / F1",
            "value": f"{s['precision']:.3f} / {s['recall']:.3f} / {s['f1']:.3f}",
        }
        for label, s in metrics.get("per_class", {}).items()
    ]
    return pd.DataFrame(rows)


def generation_view() -> tuple:
    """A run without classification scores: the generation tools shown, the scores hidden and empty."""
    return gr.update(visible=True), gr.update(visible=False), None, None, None


class EvaluateTab(Tab):
    title, id = "Evaluate", "evaluate"

    def __init__(self, ctx: AppContext, evaluator: Evaluator):
        super().__init__(ctx)
        self.evaluator = evaluator

    def build(self) -> Controls:
        gr.Markdown(
            "Pick a finished run (or `base`). Generation runs are scored on their validation split (or a dataset you "
            "name) against the base model; classification runs show their validation scores and can classify text. "
            "Preference runs (dpo, orpo, kto) add `win_rate`: the share of held-out pairs where the model gives the "
            "chosen answer a higher mean log-probability per token than the rejected one, and `logp_margin`, by how "
            "much."
        )
        with gr.Row():
            self.run = gr.Dropdown(label="Run", choices=[], elem_id="eval-run", scale=3)
            self.refresh = gr.Button("↻ runs", size="sm", scale=0, elem_id="eval-refresh")
        self.summary = gr.Dataframe(runs_summary(self.ctx), label="Runs", interactive=False, elem_id="eval-table")
        self.chart = gr.Plot(None, label="Train vs validation loss", elem_id="eval-chart")
        with gr.Group(visible=True) as self.generation:
            self._generation_settings()
            self._generation_results()
        with gr.Group(visible=False) as self.classification:
            self._classification()
        return {}

    def _generation_settings(self) -> None:
        with gr.Row():
            self.dataset = gr.Textbox(
                label="Held-out dataset", placeholder="empty: the run's validation split", scale=3
            )
            self.max_rows = gr.Slider(
                1, 500, value=20, step=1, label="rows", info="How many rows to generate for", elem_id="eval-max-rows"
            )
            self.max_new = gr.Slider(
                8,
                512,
                value=64,
                step=8,
                label="max_new_tokens",
                info="Longest generated answer",
                elem_id="eval-max-new",
            )
            self.temperature = gr.Slider(
                0.0, 1.5, value=0.0, step=0.05, label="temperature", info="0: greedy, repeatable"
            )
        with gr.Row():
            self.evaluate = gr.Button("Evaluate against base", variant="primary", elem_id="evaluate-btn")
            self.forgetting = gr.Button("Forgetting check", elem_id="forgetting-btn")

    def _generation_results(self) -> None:
        self.comparison = gr.Dataframe(label="Base vs tuned", interactive=False, elem_id="eval-comparison")
        self.forgetting_note = gr.Markdown(elem_id="forgetting-note")
        self.predictions = gr.Dataframe(
            label="Prompt / reference / prediction", interactive=False, wrap=True, elem_id="eval-rows"
        )
        self.downloads = gr.File(
            label="Download the table", file_count="multiple", interactive=False, elem_id="eval-downloads"
        )
        with gr.Accordion("Batch predict", open=False):
            self.prompts = gr.File(
                label="A file of prompts (.txt one per line, or any dataset file)",
                file_types=list(SUPPORTED_SUFFIXES),
                elem_id="batch-prompts",
            )
            self.batch = gr.Button("Predict", size="sm", elem_id="batch-btn")
            self.batch_out = gr.File(label="Answers", file_count="multiple", interactive=False, elem_id="batch-out")

    def _classification(self) -> None:
        self.scores = gr.Dataframe(label="Validation scores", interactive=False, elem_id="cls-scores")
        with gr.Row():
            self.confusion = gr.Plot(label="Confusion matrix", elem_id="confusion-plot")
            self.roc = gr.Plot(label="ROC", elem_id="roc-plot")
        self.compare_cls = gr.Button("Compare with base (untrained head)", elem_id="cls-compare-btn")
        self.cls_comparison = gr.Dataframe(label="Base vs tuned", interactive=False, elem_id="cls-comparison")
        with gr.Row():
            self.text = gr.Textbox(label="Classify this text", elem_id="cls-text", scale=3)
            self.classify = gr.Button("Classify", elem_id="cls-btn", scale=1)
        self.probabilities = gr.Label(label="Class probabilities", elem_id="cls-probs")

    def connect(self, page: Page) -> None:
        run, view = self.run, [self.chart, self.generation, self.classification, self.scores, self.confusion, self.roc]
        settings = [run, self.dataset, self.max_rows, self.max_new, self.temperature]
        self.refresh.click(self.on_refresh, None, [self.summary, run])
        self.ctx.blocks.load(self.on_refresh, None, [self.summary, run])
        run.change(self.on_run, run, view)
        self.evaluate.click(self.on_evaluate, settings, [self.comparison, self.predictions, self.downloads], **DEVICE)
        self.forgetting.click(self.on_forgetting, run, self.forgetting_note, **DEVICE)
        self.batch.click(self.on_batch, [run, self.prompts], self.batch_out, **DEVICE)
        self.classify.click(self.on_classify, [run, self.text], self.probabilities, **DEVICE)
        self.compare_cls.click(self.on_compare_classification, run, self.cls_comparison, **DEVICE)
        self.text.submit(self.on_classify, [run, self.text], self.probabilities, **DEVICE)

    def on_refresh(self):
        return runs_summary(self.ctx), gr.update(choices=["base", *self.ctx.jobs.finished_runs()])

    @on_refusal_warn(None, *generation_view())
    def on_run(self, run_id):
        if not run_id or run_id == BASE:
            return None, *generation_view()
        chart = loss_figure(self.ctx.jobs.events(run_id), "Train vs validation loss")
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
            raise TuneForgeError("pick a run first")
        options = {"dataset": dataset or None, "max_rows": int(max_rows), "max_new_tokens": int(max_new)}
        options.update(temperature=float(temperature), progress=report)

        def scored(person):
            if run_id == BASE:
                result = self.evaluator.evaluate_generation(BASE, **options)
                return result, pd.DataFrame([{"metric": k, "base": v} for k, v in result["metrics"].items()])
            result = self.evaluator.compare_with_base(run_id, **options)
            return result, pd.DataFrame(result["comparison"])

        data = self.ctx.gate.evaluation_data(run_id, dataset)
        result, table = self.ctx.act("evaluate", scored, run_id=run_id, options=data)
        out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-eval-"))
        files = write_table(result["rows"], out_dir, f"eval-{run_id}") if result["rows"] else None
        return table.round(3), pd.DataFrame(result["rows"]), [str(f) for f in files or []]

    @on_refusal("Cannot check")
    def on_forgetting(self, run_id):
        if not run_id or run_id == BASE:
            raise TuneForgeError("pick a fine-tuned run to compare with its base model")
        result = self.ctx.act("evaluate", lambda person: self.evaluator.forgetting(run_id), run_id=run_id)
        verdict = "a sign of forgetting" if result["change_pct"] > 10 else "no sign of forgetting"
        return (
            f"Perplexity on general text: base **{result['base']:.2f}** → tuned **{result['tuned']:.2f}** "
            f"({result['change_pct']:+.1f}%): {verdict}."
        )

    @on_refusal_raise()
    def on_batch(self, run_id, file):
        if file is None:
            raise TuneForgeError("upload a file of prompts first")

        def predict(person):
            stored = store_upload(file, self.ctx.gate.uploads_dir(person))  # an upload's checks: type, file, name
            out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-predict-"))
            return [str(p) for p in self.evaluator.batch_predict(run_id or BASE, stored, out_dir)]

        return self.ctx.act("batch_predict", predict, run_id=run_id or None)

    @on_refusal_raise()
    def on_compare_classification(self, run_id):
        data = self.ctx.gate.evaluation_data(run_id)
        work = lambda person: self.evaluator.compare_classification(run_id)  # noqa: E731
        result = self.ctx.act("evaluate", work, run_id=run_id, options=data)
        return pd.DataFrame(result["comparison"]).round(3)

    @on_refusal_raise()
    def on_classify(self, run_id, text):
        return self.evaluator.predict_class(run_id, text)
