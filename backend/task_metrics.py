"""What each task's runs report, and which way is better: one table for every reader of a run's metrics.

The config offers `metric_for_best_model` from it, the recipes check that choice against it and tell the
Trainer its direction, a sweep offers and optimises its metrics (and picks its direction), the Runs list
shows each run's headline from it, and the comparison lists every metric in it.

A metric's `name` is how a run's eval events carry it; its end event may carry it with Trainer's eval_ prefix,
the held-out value, beside the last logged one under the plain name (see `reported`). `best_model` is the name
Trainer's metric_for_best_model takes for it, where early stopping may watch it (Trainer adds eval_ to a name that
lacks it, so an rm run's eval_accuracy is "accuracy").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Metric:
    name: str
    greater_is_better: bool
    best_model: str = ""  # empty: early stopping cannot watch it
    headline: bool = False  # the one the Runs list shows for a completed run of the task


LOSS = Metric("eval_loss", False, best_model="eval_loss", headline=True)
_CLASSIFICATION = (
    Metric("eval_loss", False, best_model="eval_loss"),
    Metric("accuracy", True, best_model="accuracy", headline=True),
    Metric("precision_macro", True),
    Metric("recall_macro", True),
    Metric("f1_macro", True, best_model="f1_macro"),
    Metric("roc_auc", True),
)
# What a classification run and its evaluation score, beside the loss.
CLASSIFICATION_SCORES = tuple(m.name for m in _CLASSIFICATION if m.name != "eval_loss")
# TRL's preference trainers log these at each evaluation; the rejected answers' reward should fall.
_PREFERENCE = (
    Metric("eval_loss", False, best_model="eval_loss"),
    Metric("rewards/accuracies", True, headline=True),
    Metric("rewards/margins", True),
    Metric("rewards/chosen", True),
    Metric("rewards/rejected", False),
)
TASK_METRICS: dict[str, tuple[Metric, ...]] = {
    "sft": (LOSS,),
    "pt": (LOSS,),
    "classification": _CLASSIFICATION,
    "dpo": _PREFERENCE,
    "orpo": _PREFERENCE,
    "kto": _PREFERENCE,
    # The mean total reward on held-out prompts (TRL's eval_reward).
    "grpo": (Metric("eval_loss", False, best_model="eval_loss"), Metric("reward", True, "eval_reward", True)),
    # Held-out pairs scored the right way round, and by how much.
    "rm": (
        Metric("eval_loss", False, best_model="eval_loss"),
        Metric("eval_accuracy", True, best_model="accuracy", headline=True),
        Metric("eval_margin", True),
    ),
    "ppo": (LOSS,),  # refused before it runs (backend.config), listed so every task has its row
}


def metrics_of(task: str) -> tuple[Metric, ...]:
    return TASK_METRICS.get(task, (LOSS,))


def metric_names(task: str) -> tuple[str, ...]:
    return tuple(m.name for m in metrics_of(task))


def best_model_choices(task: str | None = None) -> tuple[str, ...]:
    """The metric_for_best_model values of one task, or of any task (the option's choices)."""
    tasks = [task] if task else list(TASK_METRICS)
    return tuple(dict.fromkeys(m.best_model for t in tasks for m in metrics_of(t) if m.best_model))


def all_metric_names() -> tuple[str, ...]:
    """Every metric some task reports, each once, in table order."""
    return tuple(dict.fromkeys(m.name for metrics in TASK_METRICS.values() for m in metrics))


def greater_is_better(task: str, name: str) -> bool:
    """The direction of a task's metric, named as the table or metric_for_best_model names it."""
    for m in metrics_of(task):
        if name in (m.name, m.best_model):
            return m.greater_is_better
    return "loss" not in name  # not in the table: a loss falls, anything else rises


def reported(end: dict[str, Any], name: str) -> tuple[str, float] | None:
    """A metric's key and value in a run's end event: the held-out one first, which Trainer names with eval_
    (a grpo run's eval_reward, not its last logged reward), else the metric under its own name."""
    for key in ("eval_" + name.removeprefix("eval_"), name):
        value = end.get(key)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return key, value
    return None


def headline(task: str | None, end: dict[str, Any]) -> str | None:
    """The completed run's headline metric, as the Runs list shows it ("accuracy 0.9312"), or its loss."""
    for metric in [m for m in metrics_of(task or "") if m.headline] + [LOSS]:
        found = reported(end, metric.name)
        if found:
            return f"{found[0]} {found[1]:.4f}"
    return None
