"""Comparing runs side by side: the options that differ and the final metrics.

A/B testing hyperparameters means changing one or two options and reading the result, so the
comparison shows only what differs, not fifty identical rows.
"""

from __future__ import annotations

import json
from typing import Any

from backend.events import end_event
from backend.runs.job_manager import JobManager
from backend.task_metrics import all_metric_names

# Differ between every pair of runs without meaning anything.
IGNORED_OPTIONS = ("output_dir", "resume_from_checkpoint")
# Every task's metrics (backend.task_metrics), as an end event may carry them: under their own name (a grpo run's
# last logged reward) or with Trainer's eval_ prefix (its held-out eval_reward); a row shows only where a run has it.
METRIC_KEYS = tuple(
    dict.fromkeys(
        ["train_loss", *(key for name in all_metric_names() for key in (name, "eval_" + name.removeprefix("eval_")))]
        + ["global_step", "tokens_per_s", "train_runtime_s"]
    )
)


def differing_options(jobs: JobManager, run_ids: list[str]) -> list[dict[str, Any]]:
    """One row per option whose value is not the same in every run: {"option", <run id>: value, ...}."""
    configs = {run_id: jobs.config(run_id) for run_id in run_ids}
    keys = dict.fromkeys(key for config in configs.values() for key in config)
    rows = []
    for key in keys:
        if key in IGNORED_OPTIONS:
            continue
        values = {run_id: config.get(key) for run_id, config in configs.items()}
        if len({repr(v) for v in values.values()}) > 1:
            rows.append({"option": key, **values})
    return rows


def final_metrics(jobs: JobManager, run_ids: list[str]) -> list[dict[str, Any]]:
    """One row per metric, one column per run; a run that did not complete shows its status instead."""
    ends = {run_id: end_event(jobs.events(run_id)) or {} for run_id in run_ids}
    statuses = {run_id: jobs.status(run_id) for run_id in run_ids}
    rows = [{"metric": "status", **{r: statuses[r]["status"] for r in run_ids}}]
    rows.append({"metric": "duration_s", **{r: statuses[r]["duration_s"] for r in run_ids}})
    for key in METRIC_KEYS:
        values = {r: ends[r].get(key) for r in run_ids}
        if any(v is not None for v in values.values()):
            rows.append({"metric": key, **{r: _rounded(v) for r, v in values.items()}})
    return rows + benchmark_rows(jobs, run_ids)


def benchmark_rows(jobs: JobManager, run_ids: list[str]) -> list[dict[str, Any]]:
    """Each run's newest benchmark score per task and metric (kept in its benchmarks/ folder by the job)."""
    scores: dict[str, dict[str, float]] = {}
    for run_id in run_ids:
        for path in sorted((jobs.run_dir(run_id) / "benchmarks").glob("*.json")):  # ids sort by time: newest last
            try:
                rows = json.loads(path.read_text(encoding="utf-8"))["rows"]
            except (OSError, ValueError, KeyError):
                continue
            for row in rows:
                scores.setdefault(f"{row['task']} {row['metric']}", {})[run_id] = row["value"]
    return [{"metric": key, **{r: _rounded(values.get(r)) for r in run_ids}} for key, values in scores.items()]


def _rounded(value):
    return round(value, 4) if isinstance(value, float) else value
