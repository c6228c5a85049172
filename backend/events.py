"""The events file: the only channel from a training job back to the UI and the tests.

`<output_dir>/events.jsonl` holds one JSON object a line, each with `type` and `time`:
  start       world_size, pid, config (the fully resolved options)
  status      message (a phase the user should see, e.g. converting the model)
  log         step, max_steps, epoch, loss, learning_rate, grad_norm, elapsed_s, tokens_per_s, eta_s
  eval        step, eval_loss
  checkpoint  step, path
  end         status (completed | failed | aborted), error (failed/aborted only)

Lines are appended with one write each, so a reader never sees two events interleaved; a
reader skips a half-written last line instead of failing.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

EVENTS_FILE = "events.jsonl"
END_STATUSES = ("completed", "failed", "aborted")


class EventLog:
    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / EVENTS_FILE
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        event = {"type": type, "time": round(time.time(), 3), **fields}
        line = (json.dumps(event, ensure_ascii=False, default=str) + "\n").encode("utf-8")
        # One O_APPEND write per event: safe from a signal handler and against a second writer
        # (the job manager appends 'end' when it has to kill a job).
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)
        return event


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / EVENTS_FILE
    try:
        raw = path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return []
    events = []
    for line in raw.splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events


def end_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    return next((e for e in reversed(events) if e["type"] == "end"), None)
