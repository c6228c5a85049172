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


def build(ctx: AppContext, evaluator: Evaluator) -> None:
    gr.Markdown(
        "Pick a finished run (or `base`). Generation runs are scored on their validation split (or a dataset you "
        "name) against the base model; classification runs show their validation scores and can classify text. "
        "Preference runs (dpo, orpo, kto) add `win_rate`: the share of held-out pairs where the model gives the "
        "chosen answer a higher mean log-probability per token than the rejected one, and `logp_margin`, by how much."
    )
    with gr.Row():
        run = gr.Dropdown(label="Run", choices=[], elem_id="eval-run", scale=3)
        refresh = gr.Button("↻ runs", size="sm", scale=0, elem_id="eval-refresh")
    summary = gr.Dataframe(runs_summary(ctx), label="Runs", interactive=False, elem_id="eval-table")
    chart = gr.Plot(None, label="Train vs validation loss", elem_id="eval-chart")

    with gr.Group(visible=True) as generation:
        with gr.Row():
            dataset = gr.Textbox(label="Held-out dataset", placeholder="empty: the run's validation split", scale=3)
            max_rows = gr.Slider(
                1, 500, value=20, step=1, label="rows", info="How many rows to generate for", elem_id="eval-max-rows"
            )
            max_new = gr.Slider(
                8,
                512,
                value=64,
                step=8,
                label="max_new_tokens",
                info="Longest generated answer",
                elem_id="eval-max-new",
            )
            temperature = gr.Slider(0.0, 1.5, value=0.0, step=0.05, label="temperature", info="0: greedy, repeatable")
        with gr.Row():
            evaluate = gr.Button("Evaluate against base", variant="primary", elem_id="evaluate-btn")
            forgetting = gr.Button("Forgetting check", elem_id="forgetting-btn")
        comparison = gr.Dataframe(label="Base vs tuned", interactive=False, elem_id="eval-comparison")
        forgetting_note = gr.Markdown(elem_id="forgetting-note")
        predictions = gr.Dataframe(
            label="Prompt / reference / prediction", interactive=False, wrap=True, elem_id="eval-rows"
        )
        downloads = gr.File(
            label="Download the table", file_count="multiple", interactive=False, elem_id="eval-downloads"
        )
        with gr.Accordion("Batch predict", open=False):
            prompts = gr.File(
                label="A file of prompts (.txt one per line, or any dataset file)",
                file_types=list(SUPPORTED_SUFFIXES),
                elem_id="batch-prompts",
            )
            batch = gr.Button("Predict", size="sm", elem_id="batch-btn")
            batch_out = gr.File(label="Answers", file_count="multiple", interactive=False, elem_id="batch-out")

    with gr.Group(visible=False) as classification:
        scores = gr.Dataframe(label="Validation scores", interactive=False, elem_id="cls-scores")
        with gr.Row():
            confusion = gr.Plot(label="Confusion matrix", elem_id="confusion-plot")
            roc = gr.Plot(label="ROC", elem_id="roc-plot")
        compare_cls = gr.Button("Compare with base (untrained head)", elem_id="cls-compare-btn")
        cls_comparison = gr.Dataframe(label="Base vs tuned", interactive=False, elem_id="cls-comparison")
        with gr.Row():
            text = gr.Textbox(label="Classify this text", elem_id="cls-text", scale=3)
            classify = gr.Button("Classify", elem_id="cls-btn", scale=1)
        probabilities = gr.Label(label="Class probabilities", elem_id="cls-probs")

    def choices():
        return ["base", *ctx.jobs.finished_runs()]

    def on_refresh():
        return runs_summary(ctx), gr.update(choices=choices())

    @on_refusal_warn(None, *generation_view())
    def on_run(run_id):
        if not run_id or run_id == BASE:
            return None, *generation_view()
        chart_value = loss_figure(ctx.jobs.events(run_id), "Train vs validation loss")
        if ctx.jobs.config(run_id).get("task") != "classification":
            return chart_value, *generation_view()
        metrics = saved_scores(run_id)
        return (
            chart_value,
            gr.update(visible=False),
            gr.update(visible=True),
            scores_table(metrics),
            confusion_figure(metrics["confusion_matrix"], metrics["labels"]),
            roc_figure(metrics.get("roc_curve", {}), metrics.get("roc_auc")),
        )

    def saved_scores(run_id: str) -> dict:
        try:
            return evaluator.classification_metrics(run_id)
        except FileNotFoundError as exc:  # a classification run that ended before it wrote metrics.json
            raise TuneForgeError(str(exc)) from None

    @on_refusal_raise()
    def on_evaluate(run_id, dataset, max_rows, max_new, temperature, progress=gr.Progress()):
        def report(done, total, eta):
            progress(done / total, desc=f"generating {done}/{total} · ETA {format_duration(eta)}")

        if not run_id:
            raise TuneForgeError("pick a run first")
        options = {"dataset": dataset or None, "max_rows": int(max_rows), "max_new_tokens": int(max_new)}
        options.update(temperature=float(temperature), progress=report)
        if run_id == BASE:
            result = evaluator.evaluate_generation(BASE, **options)
            table = pd.DataFrame([{"metric": k, "base": v} for k, v in result["metrics"].items()])
        else:
            result = evaluator.compare_with_base(run_id, **options)
            table = pd.DataFrame(result["comparison"])
        out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-eval-"))
        files = write_table(result["rows"], out_dir, f"eval-{run_id}") if result["rows"] else None
        return table.round(3), pd.DataFrame(result["rows"]), [str(f) for f in files or []]

    @on_refusal("Cannot check")
    def on_forgetting(run_id):
        if not run_id or run_id == BASE:
            raise TuneForgeError("pick a fine-tuned run to compare with its base model")
        result = evaluator.forgetting(run_id)
        verdict = "a sign of forgetting" if result["change_pct"] > 10 else "no sign of forgetting"
        return (
            f"Perplexity on general text: base **{result['base']:.2f}** → tuned **{result['tuned']:.2f}** "
            f"({result['change_pct']:+.1f}%): {verdict}."
        )

    @on_refusal_raise()
    def on_batch(run_id, file):
        if file is None:
            raise TuneForgeError("upload a file of prompts first")
        stored = store_upload(file, ctx.uploads_dir)  # the dataset upload's checks: type, regular file, name
        out_dir = Path(tempfile.mkdtemp(prefix="tuneforge-predict-"))
        return [str(p) for p in evaluator.batch_predict(run_id or BASE, stored, out_dir)]

    @on_refusal_raise()
    def on_compare_classification(run_id):
        return pd.DataFrame(evaluator.compare_classification(run_id)["comparison"]).round(3)

    @on_refusal_raise()
    def on_classify(run_id, text):
        return evaluator.predict_class(run_id, text)

    refresh.click(on_refresh, None, [summary, run])
    ctx.blocks.load(on_refresh, None, [summary, run])
    run.change(on_run, run, [chart, generation, classification, scores, confusion, roc])
    evaluate.click(
        on_evaluate, [run, dataset, max_rows, max_new, temperature], [comparison, predictions, downloads], **DEVICE
    )
    forgetting.click(on_forgetting, run, forgetting_note, **DEVICE)
    batch.click(on_batch, [run, prompts], batch_out, **DEVICE)
    classify.click(on_classify, [run, text], probabilities, **DEVICE)
    compare_cls.click(on_compare_classification, run, cls_comparison, **DEVICE)
    text.submit(on_classify, [run, text], probabilities, **DEVICE)
