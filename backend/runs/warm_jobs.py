"""Jobs forked from a warm job server: training starts at once instead of after ~12 s of imports.

One server per app process (backend.training.fork_server, `python -m backend.train --serve`), spawned
by the app at its start, or by a job manager at its first launch. It imports what a job needs once;
each job is then a fork of it, in its own session, as the job manager's own launch would be. A job the
server cannot be (it loads bitsandbytes; the environment changed) or a server not yet ready means a
new process, as before: the server only ever saves time.

A forked job is the server's child, not the app's, so its exit code comes from the server's
`exited` lines. If the server itself goes, its jobs go on, and the manager follows them by pid, as it
follows jobs that an earlier app process started.
"""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path

from backend.paths import PROJECT_ROOT
from backend.runfiles import JOB_MODULE, WARM_JOBS_ENV, import_time_env

ANSWER_TIMEOUT_S = 10.0
# How long a job waits for a server that is importing, counted from the server's start, before it starts as a
# new process after all. Its imports take ~7 s alone on a 2-core CPU; this is for a server that never gets there.
WAIT_FOR_IMPORTS_S = 30.0
# The phase of a run that waits for them (the page shows it in its language: webui/locales, lines.starting_for_server).
STARTING_PHASE = "starting: the warm job server is finishing its imports"


class ForkedJob:
    """A job the server forked, with what the job manager uses of a Popen: pid, poll() and wait()."""

    def __init__(self, pid: int, server: JobServer):
        self.pid = pid
        self.returncode: int | None = None
        self._server = server

    @property
    def orphaned(self) -> bool:
        """The server ended before this job did: its exit code will never be known."""
        return self.poll() is None and not self._server.alive

    def poll(self) -> int | None:
        if self.returncode is None:
            self.returncode = self._server.exit_code(self.pid)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int | None:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None and not self.orphaned:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"{JOB_MODULE} pid {self.pid}", timeout)
            time.sleep(0.05)
        return self.returncode


class JobServer:
    """The app's side of one `python -m backend.train --serve` process."""

    def __init__(self, env: dict[str, str]):
        self.env = env
        self.ready = threading.Event()
        self.alive = True
        self.started = time.monotonic()
        self._answers: queue.Queue[str] = queue.Queue()
        self._exits: dict[int, int] = {}
        self._asking = threading.Lock()
        self._proc = subprocess.Popen(
            [sys.executable, "-m", JOB_MODULE, "--serve"],
            cwd=PROJECT_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            start_new_session=True,  # not in the app's group: a Ctrl-C there is the app's, and its end closes stdin
        )
        threading.Thread(target=self._read, name="job-server-reader", daemon=True).start()

    def _read(self) -> None:
        for raw in self._proc.stdout:
            line = raw.decode(errors="replace").strip()
            if line == "ready":
                self.ready.set()
            elif line.startswith("exited "):
                _, pid, code = line.split()
                self._exits[int(pid)] = int(code)
            elif line:
                self._answers.put(line)
        self.alive = False
        self._proc.wait()
        self._answers.put("cold the job server ended")

    def exit_code(self, pid: int) -> int | None:
        return self._exits.get(pid)

    def start(self, config_path: Path, log_path: Path, env: dict[str, str]) -> ForkedJob | str:
        """The job, forked; or why it must start as a new process instead."""
        request = json.dumps({"config": str(config_path), "log": str(log_path), "env": env}) + "\n"
        with self._asking:
            try:
                self._proc.stdin.write(request.encode())
                self._proc.stdin.flush()
                answer = self._answers.get(timeout=ANSWER_TIMEOUT_S)
            except (OSError, ValueError):
                return "the job server ended"
            except queue.Empty:
                self.close()  # a late answer would be taken for the next request's
                return f"the job server did not answer in {ANSWER_TIMEOUT_S:.0f} s"
        if answer.startswith("started "):
            return ForkedJob(int(answer.split()[1]), self)
        return answer.removeprefix("cold ")

    def close(self) -> None:
        """End the server (it ends when its stdin closes); the jobs it started go on."""
        self.alive = False
        try:
            self._proc.stdin.close()
        except OSError:
            pass


_server: JobServer | None = None
_server_lock = threading.Lock()
_given_up = False  # a server ended before it was ever ready: it would again, at every launch


def warm_server(env: dict[str, str]) -> JobServer | str | None:
    """This process's job server if it is ready for a job with env; else why not, after starting one for later.

    None when switched off (TUNEFORGE_WARM_JOBS=0).
    """
    global _server, _given_up
    if os.environ.get(WARM_JOBS_ENV, "1") == "0":
        return None
    with _server_lock:
        if _given_up or (_server is not None and not _server.alive and not _server.ready.is_set()):
            if not _given_up:
                print("job server: it ended before it was ready; jobs start as new processes", file=sys.stderr)
            _given_up = True
            return "it ended before it was ready (the app's log says why)"
        why = "it is starting"
        if _server is not None and (not _server.alive or import_time_env(_server.env) != import_time_env(env)):
            changed = set(import_time_env(_server.env).items()) ^ set(import_time_env(env).items())
            why = "it ended; a new one is starting"
            if changed:
                names = ", ".join(sorted({name for name, _ in changed}))
                why = f"the environment changed ({names}); a new one is starting"
                print(f"job server: {why}", file=sys.stderr)
            _server.close()
            _server = None
        if _server is None:
            _server = JobServer(env)
            return why
        return _server if _server.ready.is_set() else "it is still importing"


def worth_waiting_for(env: dict[str, str]) -> bool:
    """Whether a job should wait for this process's job server rather than start as a new process now.

    So it should while a server for env imports (one is started here if there is none), for up to
    WAIT_FOR_IMPORTS_S from its start. A new process would do the same imports beside it, on the same
    cores: on a 2-core CPU both then take about twice as long, so the job would train no sooner, and
    the machine would spend the imports twice. Never once that server has ended, or where it is off.
    """
    answer = warm_server(env)
    server = _server
    return (
        isinstance(answer, str)
        and server is not None
        and server.alive
        and not server.ready.is_set()
        and time.monotonic() - server.started < WAIT_FOR_IMPORTS_S
    )


def wait_until_ready(timeout: float) -> bool:
    """Whether this process's job server is ready within timeout s (False if there is none)."""
    server = _server
    return server is not None and server.ready.wait(timeout)
