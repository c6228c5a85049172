"""Metric code against values computed by hand on tiny inputs."""

import math

import pytest

from backend.metrics import classification_metrics, generation_metrics, perplexity, roc_curves


def test_binary_classification_by_hand():
    # true: a a b b ; predicted (argmax): a b b b ; P(b) = .2 .6 .7 .9
    probs = [[0.8, 0.2], [0.4, 0.6], [0.3, 0.7], [0.1, 0.9]]
    m = classification_metrics([0, 0, 1, 1], probs, ["a", "b"])
    assert m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 1], [0, 2]]
    # a: precision 1/1, recall 1/2, F1 2/3 ; b: precision 2/3, recall 1, F1 4/5
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert m["precision_macro"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["recall_macro"] == pytest.approx(0.75)
    assert m["f1_macro"] == pytest.approx((2 / 3 + 4 / 5) / 2)
    assert m["roc_auc"] == 1.0  # every b scores above every a


def test_multiclass_auc_is_one_vs_rest_macro():
    probs = [[0.6, 0.3, 0.1], [0.2, 0.5, 0.3], [0.1, 0.2, 0.7], [0.5, 0.4, 0.1]]
    m = classification_metrics([0, 1, 2, 1], probs, ["x", "y", "z"])
    # x vs rest: scores .6 .2 .1 .5, x positive at .6 → rank 1 of 1 → AUC 1
    # y vs rest: y scores .5 .4 vs others .3 .2 → AUC 1 ; z vs rest: .7 vs .1 .3 .1 → AUC 1
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 0.75
    assert m["confusion_matrix"] == [[1, 0, 0], [1, 1, 0], [0, 0, 1]]


def test_roc_curve_for_binary_task_has_one_curve_ending_at_one():
    curves = roc_curves([0, 1, 1, 0], [[0.9, 0.1], [0.2, 0.8], [0.4, 0.6], [0.3, 0.7]], ["neg", "pos"])
    fpr, tpr = curves["pos"]
    assert list(curves) == ["pos"] and fpr[-1] == tpr[-1] == 1.0


def test_generation_metrics_by_hand():
    m = generation_metrics(["the cat sat on the mat", "hello"], ["the cat sat on the mat", "goodbye"])
    assert m["exact_match"] == 50.0
    assert m["rouge1"] == pytest.approx(50.0)  # 1.0 and 0.0
    # corpus BLEU: unigram precision 6/7 ("hello" misses), 2-, 3- and 4-gram precisions 1, no brevity penalty
    assert m["bleu"] == pytest.approx(100 * (6 / 7) ** 0.25, rel=1e-3)


def test_perplexity_is_exp_of_loss():
    assert perplexity(math.log(20)) == pytest.approx(20)
    assert perplexity(None) is None and perplexity(float("nan")) is None
