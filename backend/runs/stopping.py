"""Stopping a background job (a training run, a recipe, a benchmark or a judge): its whole process group."""

from __future__ import annotations

import os
import signal
import time

GRACE_S = 3.0  # a job's own SIGTERM handler writes its end event and leaves; past this, SIGKILL


def stop_group(pid: int, exited, grace_s: float = GRACE_S) -> None:
    """SIGTERM the process group led by pid, then SIGKILL whatever is left once exited() is still false after
    the grace period. A group already gone (or not ours) is left alone."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return
    deadline = time.time() + grace_s
    while time.time() < deadline and not exited():
        time.sleep(0.05)
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
