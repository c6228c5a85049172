"""Metrics, computed locally with scikit-learn, sacrebleu and rouge-score (no hub downloads).

Classification: accuracy, macro precision/recall/F1, per-class scores, the confusion matrix
(rows = true label, columns = predicted, in `labels` order) and ROC AUC (one-vs-rest macro
when there are more than two classes). Generation: ROUGE-1/2/L F-measure, corpus BLEU and
exact match, each on a 0-100 scale like the libraries report them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


def classification_metrics(y_true: Sequence[int], probabilities: Sequence[Sequence[float]], labels: list[str]) -> dict:
    import numpy as np
    from sklearn import metrics as skm

    y_true = np.asarray(y_true)
    probs = np.asarray(probabilities, dtype=float)
    y_pred = probs.argmax(axis=1)
    ids = list(range(len(labels)))
    precision, recall, f1, support = skm.precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    result = {
        "accuracy": float(skm.accuracy_score(y_true, y_pred)),
        "precision_macro": float(precision.mean()),
        "recall_macro": float(recall.mean()),
        "f1_macro": float(f1.mean()),
        "per_class": {
            label: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for label, p, r, f, s in zip(labels, precision, recall, f1, support, strict=True)
        },
        "labels": list(labels),
        "confusion_matrix": skm.confusion_matrix(y_true, y_pred, labels=ids).tolist(),
        "roc_auc": None,
    }
    present = set(y_true.tolist())
    if len(present) >= 2:
        if len(labels) == 2:
            result["roc_auc"] = float(skm.roc_auc_score(y_true, probs[:, 1]))
        elif present == set(ids):
            result["roc_auc"] = float(skm.roc_auc_score(y_true, probs, multi_class="ovr", average="macro", labels=ids))
    return result


def roc_curves(y_true: Sequence[int], probabilities: Sequence[Sequence[float]], labels: list[str]) -> dict:
    """{label: (fpr, tpr)} one-vs-rest; a two-class task has one curve, for the second label."""
    import numpy as np
    from sklearn.metrics import roc_curve

    y_true = np.asarray(y_true)
    probs = np.asarray(probabilities, dtype=float)
    classes = [1] if len(labels) == 2 else range(len(labels))
    curves = {}
    for c in classes:
        positives = y_true == c
        if positives.any() and (~positives).any():
            fpr, tpr, _ = roc_curve(positives, probs[:, c])
            curves[labels[c]] = (fpr.tolist(), tpr.tolist())
    return curves


def generation_metrics(predictions: Sequence[str], references: Sequence[str]) -> dict:
    import sacrebleu
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rouge1", "rouge2", "rougeL"], use_stemmer=True)
    totals = {"rouge1": 0.0, "rouge2": 0.0, "rougeL": 0.0}
    for prediction, reference in zip(predictions, references, strict=True):
        scores = scorer.score(reference, prediction)
        for key in totals:
            totals[key] += scores[key].fmeasure
    n = max(1, len(predictions))
    exact = sum(p.strip() == r.strip() for p, r in zip(predictions, references, strict=True))
    return {
        "rouge1": 100 * totals["rouge1"] / n,
        "rouge2": 100 * totals["rouge2"] / n,
        "rougeL": 100 * totals["rougeL"] / n,
        "bleu": float(sacrebleu.corpus_bleu(list(predictions), [list(references)]).score),
        "exact_match": 100 * exact / n,
    }


def perplexity(mean_loss: float | None) -> float | None:
    if mean_loss is None or not math.isfinite(mean_loss):
        return None
    return math.exp(min(mean_loss, 50.0))  # beyond e^50 the number says nothing more
