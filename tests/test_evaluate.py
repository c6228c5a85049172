"""Evaluation of finished runs: base vs tuned, forgetting, batch predict, classification scores."""

import pytest

from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator
from backend.serving.chat import ChatEngine
from tests.helpers import train_in_process

# The real model: the browser story and what evaluation finds are the point.
pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def evaluated(real_jobs, secret_lora_run, reviews_run):
    return real_jobs, Evaluator(real_jobs, ChatEngine(real_jobs)), secret_lora_run, reviews_run


def test_tuned_beats_base_on_the_runs_validation_rows(evaluated, tmp_path):
    jobs, evaluator, sft, _ = evaluated
    seen = []
    result = evaluator.compare_with_base(sft, max_rows=4, max_new_tokens=16, progress=lambda *a: seen.append(a))
    table = {row["metric"]: row for row in result["comparison"]}
    assert set(table) == {"eval_loss", "perplexity", "rouge1", "rouge2", "rougeL", "bleu", "exact_match"}
    assert table["eval_loss"]["difference"] < 0 and table["rouge1"]["tuned"] > table["rouge1"]["base"]
    assert table["exact_match"]["tuned"] == pytest.approx(100.0)
    assert (
        len(result["rows"]) == 4
        and {"prompt", "reference", "prediction", "base_prediction"} <= result["rows"][0].keys()
    )
    assert seen[-1][:2] == (4, 4)  # progress reached the end, for both models


def test_forgetting_check_reports_both_perplexities(evaluated, tiny_model, secret_dataset):
    """On a tiny run: two perplexities and their change are the point (the real model's take a minute)."""
    jobs, evaluator, _, _ = evaluated
    options = {"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 2, "val_size": 0}
    result = evaluator.forgetting(train_in_process(jobs, options))
    assert result["base"] > 1 and result["tuned"] > 1
    assert result["change_pct"] == pytest.approx(100 * (result["tuned"] / result["base"] - 1))


def test_batch_predict_writes_jsonl_and_csv(evaluated, tmp_path):
    _, evaluator, sft, _ = evaluated
    prompts = tmp_path / "prompts.txt"
    prompts.write_text("What is the secret word?\nTell me the secret word.\n")
    jsonl, table = evaluator.batch_predict(sft, str(prompts), tmp_path / "out", max_new_tokens=12)
    lines = jsonl.read_text().splitlines()
    assert len(lines) == 2 and "pineapple" in lines[0].lower()
    assert table.read_text().startswith("prompt,prediction")


def test_classification_scores_and_typed_text(evaluated, tmp_path):
    _, evaluator, _, cls = evaluated
    assert evaluator.evaluate(cls)["accuracy"] >= 0.9
    holdout = tmp_path / "more.csv"
    holdout.write_text(
        "text,label\nWonderful staff and a lovely quiet room.,positive\nCold food and a rude waiter.,negative\n"
    )
    assert evaluator.classification_metrics(cls, str(holdout))["confusion_matrix"] == [[1, 0], [0, 1]]
    probabilities = evaluator.predict_class(cls, "I adored every minute of this film.")
    assert max(probabilities, key=probabilities.get) == "positive"
    assert sum(probabilities.values()) == pytest.approx(1.0)
    table = {row["metric"]: row for row in evaluator.compare_classification(cls)["comparison"]}
    assert table["accuracy"]["tuned"] >= 0.9 and table["accuracy"]["difference"] > 0.2  # base head is untrained
    with pytest.raises(TuneForgeError, match="labels maybe were not in training"):
        bad = tmp_path / "bad.csv"
        bad.write_text("text,label\nfine,maybe\nok,positive\n")
        evaluator.classification_metrics(cls, str(bad))
