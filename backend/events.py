"""The events file: the only channel from a training job back to the UI and the tests.

`<output_dir>/events.jsonl` holds one JSON object a line, each with `type` and `time`:
  start       world_size, pid, config (the fully resolved options); resumed_from (step) on a resume
  status      message (a phase the user should see, e.g. converting the model); the `training` one
              also max_steps, attention (what packed rows attend with, backend.training.batching) and
              precision (what the run trains in: bf16 | fp16 | fp32, as precision auto resolved it)
  log         step, max_steps, epoch, loss, learning_rate, grad_norm, elapsed_s, tokens_per_s, eta_s,
              gflops, flops_per_token (what one token of a step costs: backend.training.flops), mfu (0 to 1,
              against the machine's cached matmul peak: backend.training.matmul_peak),
              peak_memory_mb (GPU memory allocated on CUDA, resident memory on a CPU)
  eval        step, eval_loss
  checkpoint  step, path
  end         status (completed | failed | aborted | interrupted), error (all but completed)
  resume      checkpoint (written by the job manager when it queues a resume)
  abort       reason (written by the job manager before it stops a job for someone other than the
              user, such as a sweep's pruner: the run's error then says why)

A resumed run appends a second `start` to the same file: each `start` opens an attempt, and
`timeline()` joins the attempts into the one history the chart shows.

Lines are appended with one write each, so a reader never sees two events interleaved; a
reader skips a half-written last line instead of failing.
"""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path
from typing import Any

from backend.runfiles import EVENTS_FILE

END_STATUSES = ("completed", "failed", "aborted", "interrupted")


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


class NullEventLog(EventLog):
    """The event log of ranks other than 0: they report nothing, so that every event is written once."""

    def __init__(self):
        self.path = None

    def emit(self, type: str, **fields: Any) -> dict[str, Any]:
        return {"type": type, "time": round(time.time(), 3), **fields}


def read_events(run_dir: str | Path) -> list[dict[str, Any]]:
    path = Path(run_dir) / EVENTS_FILE
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return []
    return _parse(raw)


def _parse(raw: bytes) -> list[dict[str, Any]]:
    events = []
    for line in raw.decode("utf-8", errors="replace").splitlines():
        try:
            event = json.loads(line)
        except json.JSONDecodeError:
            continue  # a line still being written
        if isinstance(event, dict) and "type" in event:
            events.append(event)
    return events


class EventsCache:
    """Reads events files incrementally: each call parses only the bytes appended since the last.

    The UI polls every run's status every second; re-reading whole files would grow with the history.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._files: dict[Path, tuple[int, int, list[dict[str, Any]]]] = {}  # path -> (inode, offset, events)

    def read(self, run_dir: str | Path) -> list[dict[str, Any]]:
        path = Path(run_dir) / EVENTS_FILE
        with self._lock:
            try:
                with open(path, "rb") as f:
                    inode = os.fstat(f.fileno()).st_ino
                    known_inode, offset, events = self._files.get(path, (inode, 0, []))
                    if known_inode != inode or os.fstat(f.fileno()).st_size < offset:
                        offset, events = 0, []  # replaced or truncated: start over
                    f.seek(offset)
                    chunk = f.read()
            except FileNotFoundError:
                self._files.pop(path, None)
                return []
            complete = chunk[: chunk.rfind(b"\n") + 1]  # a half-written last line waits for the next read
            events = events + _parse(complete)
            self._files[path] = (inode, offset + len(complete), events)
            return list(events)


def end_event(events: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The end of the latest attempt; None while it runs (a resumed run's old end no longer counts)."""
    for event in reversed(events):
        if event["type"] == "end":
            return event
        if event["type"] in ("start", "resume"):
            return None
    return None


def timeline(events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """All attempts joined: a resume drops the points its earlier attempt logged after the checkpoint."""
    joined: list[dict[str, Any]] = []
    for event in events:
        if event["type"] == "start" and event.get("resumed_from") is not None:
            step = event["resumed_from"]
            joined = [e for e in joined if e["type"] not in ("log", "eval") or e.get("step", 0) <= step]
        joined.append(event)
    return joined


def metric_points(events: list[dict[str, Any]], key: str, kind: str = "log") -> list[tuple[int, float]]:
    """(step, value) pairs of one logged metric, such as rewards/margins."""
    return [(e["step"], e[key]) for e in events if e["type"] == kind and e.get(key) is not None]


def loss_points(events: list[dict[str, Any]]) -> tuple[list[tuple[int, float]], list[tuple[int, float]]]:
    """(step, train loss) and (step, eval loss) pairs, for charts and model cards."""
    train = [(e["step"], e["loss"]) for e in events if e["type"] == "log" and e.get("loss") is not None]
    evals = [(e["step"], e["eval_loss"]) for e in events if e["type"] == "eval" and e.get("eval_loss") is not None]
    return train, evals
