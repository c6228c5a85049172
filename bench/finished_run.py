"""One run of a bench script, started in a job manager and waited for: the demos all measure the same way."""

from __future__ import annotations

import sys
import time


def run_to_end(jobs, options: dict) -> tuple[str, float]:
    """(run id, wall seconds) of a run that completed; any other ending stops the script with its one line."""
    began = time.perf_counter()
    run_id = jobs.start(options)
    while jobs.status(run_id)["status"] in ("queued", "running"):
        time.sleep(1)
    status = jobs.status(run_id)
    if status["status"] != "completed":
        sys.exit(f"run {run_id} {status['status']}: {status['error']}")
    return run_id, time.perf_counter() - began
