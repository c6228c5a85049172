"""Classification end to end through the CLI: the bundled reviews, early stopping, a decoder head."""

import json

import pytest
import yaml

from backend.events import read_events
from tests.helpers import run_cli_in_process

METRIC_KEYS = {"accuracy", "precision_macro", "recall_macro", "f1_macro", "per_class", "confusion_matrix", "roc_auc"}


def train(tmp_path, **options):
    run_dir = tmp_path / "run"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"task": "classification", "output_dir": str(run_dir), **options}))
    result = run_cli_in_process(config)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def reviews_dir(real_jobs, reviews_run):
    return real_jobs.run_dir(reviews_run)


@pytest.mark.slow
def test_reviews_reach_90_percent_accuracy_with_full_metrics(reviews_dir):
    metrics = json.loads((reviews_dir / "metrics.json").read_text())
    assert METRIC_KEYS <= metrics.keys()
    assert metrics["accuracy"] >= 0.9, metrics["accuracy"]
    assert metrics["labels"] == ["negative", "positive"]
    assert sum(map(sum, metrics["confusion_matrix"])) == 40  # 25% of 160 rows
    final = [e for e in read_events(reviews_dir) if e["type"] == "eval" and e.get("final")]
    assert final and final[-1]["accuracy"] == metrics["accuracy"]


@pytest.mark.slow
def test_classifier_loads_with_plain_peft_and_transformers(reviews_dir):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from backend.models.sources import default_encoder_dir

    labels = json.loads((reviews_dir / "labels.json").read_text())
    base = AutoModelForSequenceClassification.from_pretrained(default_encoder_dir(), num_labels=len(labels))
    model = PeftModel.from_pretrained(base, reviews_dir).eval()
    tokenizer = AutoTokenizer.from_pretrained(reviews_dir)
    texts = ["An absolute delight, I would happily go back every week.", "Broken on arrival and support never replied."]
    with torch.no_grad():
        predicted = model(**tokenizer(texts, padding=True, return_tensors="pt")).logits.argmax(-1).tolist()
    assert [labels[i] for i in predicted] == ["positive", "negative"]


def test_early_stopping_stops_and_marks_the_best_checkpoint(tmp_path, tiny_model_of):
    """On a tiny BERT: the stop and the marked checkpoint are the point, not the accuracy it reaches."""
    run_dir = train(
        tmp_path,
        model=str(tiny_model_of("bert")),
        dataset="demo_reviews",
        val_size=0.25,
        num_train_epochs=20,
        learning_rate=1e-3,
        eval_steps=5,
        early_stopping_patience=2,
        metric_for_best_model="accuracy",
    )
    metrics = json.loads((run_dir / "metrics.json").read_text())
    planned = next(e for e in read_events(run_dir) if e["type"] == "status" and "max_steps" in e)["max_steps"]
    assert metrics["stopped_early"] and metrics["global_step"] < planned
    best = metrics["best_checkpoint"]
    assert best["metric"] == "accuracy" and (run_dir / f"checkpoint-{best['step']}" / "BEST").exists()
    assert [e for e in read_events(run_dir) if e["type"] == "best"][-1]["step"] == best["step"]


def test_a_decoder_gets_a_classification_head_too(tmp_path, tiny_model):
    run_dir = train(tmp_path, dataset="demo_reviews", model=tiny_model, max_steps=2, val_size=0.1)
    assert json.loads((run_dir / "adapter_config.json").read_text())["task_type"] == "SEQ_CLS"
    assert "accuracy" in json.loads((run_dir / "metrics.json").read_text())


def test_full_finetuning_saves_a_plain_sequence_classifier(tmp_path):
    from transformers import AutoModelForSequenceClassification

    run_dir = train(tmp_path, dataset="demo_reviews", method="full", max_steps=3, val_size=0.25)
    model = AutoModelForSequenceClassification.from_pretrained(run_dir)
    assert model.config.id2label == {0: "negative", 1: "positive"}
    assert not (run_dir / "adapter_config.json").exists()


def test_metric_that_does_not_fit_the_task_is_refused(tmp_path):
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump({"metric_for_best_model": "accuracy", "output_dir": str(tmp_path / "run")}))
    result = run_cli_in_process(config)
    assert result.returncode == 2
    assert "metric_for_best_model='accuracy' does not apply to task sft" in result.stderr
