"""The OpenAI-compatible servers the app starts for its runs (the Export tab's Serve button).

Each is `python -m backend.serve` in its own process group, bound to 127.0.0.1 on a free port, with its
output in the run folder's serve.log. It is stopped by Stop, or with the app. A server a person wants
beyond this machine is theirs to start from a terminal with --host and --api-key (docs/gguf.md).
"""

from __future__ import annotations

import atexit
import os
import signal
import socket
import subprocess
import sys
import threading
import time

from backend.errors import TuneForgeError
from backend.paths import PROJECT_ROOT
from backend.runs.job_manager import JobManager

SERVE_LOG = "serve.log"
READY_S = 600.0  # merging (and for llama.cpp exporting a GGUF and checking it) and loading a model


class Servers:
    def __init__(self, jobs: JobManager):
        self.jobs = jobs
        self._lock = threading.Lock()
        self._running: dict[str, tuple[subprocess.Popen, str]] = {}
        # Unlike a job, a server belongs to the page that started it: it stops with the app.
        atexit.register(self.shutdown)

    def start(self, run_id: str, api_key: str = "", engine: str = "transformers") -> str:
        """Serve a completed run on engine (transformers, or llamacpp: its q8_0 GGUF, exported first if need be);
        its base URL (http://127.0.0.1:PORT/v1). A run already served keeps its server."""
        if engine not in ("transformers", "llamacpp"):
            raise TuneForgeError(f"engine {engine!r}: use transformers or llamacpp")
        run_dir = self.jobs.run_dir(run_id)
        if self.jobs.status(run_id)["status"] != "completed":
            raise TuneForgeError(f"run '{run_id}' is not completed; only a completed run can be served")
        with self._lock:
            served = self._running.get(run_id)
            if served and served[0].poll() is None:
                return served[1]
        port = _free_port()
        command = [sys.executable, "-m", "backend.serve", "--workspace", str(self.jobs.workspace), "--run", run_id]
        command += ["--port", str(port), "--engine", engine, *(["--api-key", api_key] if api_key else [])]
        log_path = run_dir / SERVE_LOG
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(
                command, cwd=PROJECT_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, env=os.environ
            )
        url = f"http://127.0.0.1:{port}/v1"
        deadline = time.time() + READY_S
        while "serving run" not in log_path.read_text(encoding="utf-8", errors="replace"):
            if proc.poll() is not None or time.time() > deadline:
                _stop(proc)
                lines = log_path.read_text(encoding="utf-8", errors="replace").strip().splitlines() or ["no output"]
                raise TuneForgeError(f"the server did not start: {lines[-1]} (see {log_path})")
            time.sleep(0.25)
        with self._lock:
            self._running[run_id] = (proc, url)
        return url

    def stop(self, run_id: str) -> bool:
        """Stop the run's server; False when none was running."""
        with self._lock:
            served = self._running.pop(run_id, None)
        if served is None or served[0].poll() is not None:
            return False
        _stop(served[0])
        return True

    def shutdown(self) -> None:
        for run_id in list(self._running):
            self.stop(run_id)


def _stop(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=10)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
