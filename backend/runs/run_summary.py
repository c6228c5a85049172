"""A run's state, read from its folder: what train_status returns and the Runs tab lists.

Everything here reads the run directory's files (events, owner, sweep label) and the job's process,
never the job manager's queue: the manager passes in what only it knows (queue position, whether the
process it holds is alive), so a run started from a terminal summarises the same way.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import psutil

from backend.events import end_event, timeline
from backend.files import write_text_atomically
from backend.runfiles import JOB_MODULE, OWNER_FILE, SWEEP_FILE
from backend.runs.warm_jobs import STARTING_PHASE
from backend.task_metrics import headline


def job_pid(events: list[dict[str, Any]]) -> int | None:
    start = next((e for e in events if e["type"] == "start"), None)
    return start.get("pid") if start else None


def is_job_process(pid: int) -> bool:
    """Whether pid is alive and still a training job (pids are reused after a reboot or long uptime)."""
    try:
        process = psutil.Process(pid)
        return process.status() != psutil.STATUS_ZOMBIE and JOB_MODULE in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def summarize(
    run_dir: Path,
    events: list[dict[str, Any]],
    queue_position: int | None = None,
    alive: bool | None = None,
    starting: bool = False,
) -> dict[str, Any]:
    """A run's state from its events: what train_status returns and the run list shows.

    starting: the run waits for the warm job server's imports (backend.runs.warm_jobs): queued, in no place in line."""
    events = timeline(events)
    logs = [e for e in events if e["type"] == "log"]
    evals = [e for e in events if e["type"] == "eval"]
    statuses = [e for e in events if e["type"] == "status"]
    starts = [e for e in events if e["type"] == "start"]
    training = next((e for e in reversed(statuses) if e.get("message") == "training"), {})
    end = end_event(events)
    last = logs[-1] if logs else {}
    config = starts[-1].get("config", {}) if starts else {}
    summary: dict[str, Any] = {
        "run_id": run_dir.name,
        "run_dir": str(run_dir),
        "status": "running",
        "phase": statuses[-1]["message"] if statuses else "starting",
        "step": last.get("step", 0),
        "max_steps": last.get("max_steps") or (statuses[-1].get("max_steps") if statuses else None) or 0,
        "epoch": last.get("epoch", 0.0),
        "loss": last.get("loss"),
        "eval_loss": evals[-1]["eval_loss"] if evals else None,
        "tokens_per_s": last.get("tokens_per_s"),
        "mfu": last.get("mfu"),
        "precision": training.get("precision"),  # what precision auto resolved to, once training began
        "attention": training.get("attention"),
        "elapsed_s": last.get("elapsed_s"),
        "eta_s": last.get("eta_s"),
        "error": None,
        "started": events[0]["time"] if events else None,
        "duration_s": _duration(events),
        "queue_position": queue_position,
        "resumes": sum(1 for e in starts if e.get("resumed_from") is not None),
        "model": config.get("model"),
        "method": config.get("method"),
        "task": config.get("task"),
        "dataset": config.get("dataset"),
        "metric": None,
        "sweep": None,
        "owner": read_owner(run_dir),
    }
    if (run_dir / SWEEP_FILE).exists():
        summary["sweep"] = _sweep_label(run_dir)
    if starting:
        summary.update(status="queued", phase=STARTING_PHASE)
    elif queue_position is not None:
        summary.update(status="queued", phase=f"queued, #{queue_position} in line")
    elif end is not None:
        error = (end["status"] == "aborted" and _abort_reason(events)) or end.get("error")
        summary.update(status=end["status"], error=error, phase=end["status"])
        if end["status"] == "completed":
            summary["eval_loss"] = end.get("eval_loss", summary["eval_loss"])
            summary["eta_s"] = 0
            summary["metric"] = headline(config.get("task"), end)
    elif not events and alive is None:
        summary.update(status="queued", phase="not started")
    elif alive is False or (alive is None and not is_job_process(job_pid(events) or -1)):
        summary.update(
            status="interrupted", phase="interrupted", error="the job stopped without reporting an end; see train.log"
        )
    return summary


def _abort_reason(events: list[dict[str, Any]]) -> str | None:
    """Why the latest attempt was stopped, where someone other than the user stopped it."""
    for event in reversed(events):
        if event["type"] == "abort":
            return event.get("reason")
        if event["type"] in ("start", "resume"):
            return None
    return None


def write_owner(run_dir: Path, owner: str | None) -> None:
    if owner:
        write_text_atomically(run_dir / OWNER_FILE, json.dumps({"user": owner}))


def read_owner(run_dir: Path) -> str | None:
    try:
        return json.loads((run_dir / OWNER_FILE).read_text(encoding="utf-8"))["user"]
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _sweep_label(run_dir: Path) -> str | None:
    try:
        label = json.loads((run_dir / SWEEP_FILE).read_text(encoding="utf-8"))
        return f"{label['sweep_id']} #{label['trial']}"
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _duration(events: list[dict[str, Any]]) -> float | None:
    """Wall time spent training, summed over attempts (a resumed run's pause does not count)."""
    total, begun, last = 0.0, None, None
    for event in events:
        if event["type"] == "start":
            if begun is not None:
                total += last - begun
            begun = event["time"]
        last = event["time"]
    if begun is None:
        return None
    return round(total + last - begun, 1)
