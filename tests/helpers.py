"""Helpers the tests share: running the CLI and the app as a user does, waiting, processes, the browser.

Fixtures live in conftest.py; plain functions live here, so no test file imports another.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LLAMAFACTORY_DATA = ROOT.parent / "shared" / "data" / "llamafactory"
# Debian's chromium, headless, without the background connections this offline machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def write_config(path: Path, **options) -> Path:
    path.write_text(yaml.safe_dump(options), encoding="utf-8")
    return path


def run_cli(config_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m backend.train --config ...` exactly as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "backend.train", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workspace: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`python launch.py` as `make run` starts it, on a free port; returns once it answers."""
    import time
    import urllib.error
    import urllib.request

    port = free_port()
    log = open(workspace.parent / f"app-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *extra],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early; see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except urllib.error.HTTPError:
            return proc, url  # it answers, behind a login
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not answer within 120 s; see {log.name}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def allow_dirs(*folders: Path) -> list[str]:
    """--allow-dir arguments for the folders that exist: test data lives outside the app's workspace."""
    return [arg for folder in folders if folder.is_dir() for arg in ("--allow-dir", str(folder))]


def is_live(pid: int) -> bool:
    """Whether pid runs; a zombie waiting for init to reap it does not count."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_group_members(pgid: int) -> list[int]:
    """Pids still running in a process group."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and is_live(process.pid):
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def live_descendants(pid: int) -> list[int]:
    """Pids still running below pid, at any depth; torchrun's ranks sit in sessions of their own, outside its group."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if is_live(child.pid)]


def wait_for(predicate, timeout=180, interval=0.25):
    """predicate()'s first truthy value, asked every interval seconds; fails after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def finish(jobs, run_id, timeout=600) -> dict:
    """Wait for a run to end, and fail unless it completed; returns its status."""
    status = wait_for(lambda: (s := jobs.status(run_id))["status"] not in ("queued", "running") and s, timeout, 0.5)
    assert status["status"] == "completed", status
    return status


# ---- the browser -------------------------------------------------------------------------------
def pick(page, elem_id, option):
    """Choose an option in a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")
