"""A warm process that forks training jobs, so a job starts training at once instead of after its imports.

`python -m backend.train --serve` imports what a job needs (torch, transformers, peft, trl, datasets:
about 12 s on a 2-core CPU), then waits. The app's job manager (backend.runs.warm_jobs) sends it one
request a line on stdin, as JSON: {"config": run.yaml, "log": train.log, "env": the job's environment}.
For each, the server forks a child that is the job, exactly as `python -m backend.train --config
run.yaml` would be: its own session and process group (abort signals the group), stdin on /dev/null,
stdout and stderr appended to the log, the job's environment, and the job's own main().

On its own stdout the server answers, one line each:
  ready                  the imports are done; requests are served from now on
  started <pid>          a request's job is running as pid
  cold <reason>          the request must be started as a new process instead (see below)
  exited <pid> <code>    a job ended; code as Popen gives it (-N: killed by signal N)

A job is sent back cold when this process cannot be it: a run that loads bitsandbytes (peft is imported
here with bitsandbytes hidden, see backend.train.hide_unused_bitsandbytes). The app sends only jobs whose
import-time environment (backend.runfiles.IMPORT_TIME_ENV) is the one this server started with.
The server ends when its stdin closes (the app ended); jobs it started go on, like any job of the app.

Forking is safe here because nothing in this process has computed anything yet: torch starts its
thread pools on the first parallel operation, after the fork, in the job. The only threads the imports
start are native and fork-aware: the idle OpenBLAS servers of numpy and scipy, and pyarrow's jemalloc
background thread, which stop or reset themselves around a fork (pthread_atfork). A Python thread
would not be: the server refuses to serve if an import ever starts one.
"""

from __future__ import annotations

import json
import os
import select
import signal
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from backend.cycle_collector import settle
from backend.runfiles import NICE_ENV

REAP_INTERVAL_S = 0.2


def warm_imports() -> None:
    """What every job imports before its first step, imported once here (bitsandbytes kept out)."""
    sys.modules.setdefault("bitsandbytes", None)
    import datasets  # noqa: F401
    import peft  # noqa: F401
    import torch  # noqa: F401
    import transformers  # noqa: F401
    from transformers import AutoModelForCausalLM, AutoModelForSequenceClassification, Trainer  # noqa: F401

    import backend.training.classification  # noqa: F401
    import backend.training.preference  # noqa: F401
    import backend.training.sft  # noqa: F401


def cannot_fork_here() -> str | None:
    if not sys.platform.startswith("linux"):  # macOS's system frameworks are not safe to use after a fork
        return f"forking jobs is for Linux, not {sys.platform}"
    return None


def cannot_fork_after_imports() -> str | None:
    import torch

    if torch.version.cuda or torch.version.hip:
        # A GPU job forked from a process that has asked the driver anything cannot start CUDA, and torch
        # asks it at import on some versions. GPU jobs run long enough that their imports matter little.
        return "a CUDA or ROCm build of torch, whose forked jobs could not use the GPU"
    if threading.active_count() > 1:  # a fork would copy the locks another Python thread holds, without it
        return f"{threading.active_count()} Python threads after the imports"
    return None


def serve(run_job: Callable[[list[str]], int], needs_bitsandbytes: Callable[[str], bool]) -> int:
    """Serve fork requests until stdin closes. run_job is the job's main(argv); needs_bitsandbytes(config path)."""
    # The answers go on a copy of stdout; fd 1 itself goes to stderr, so no library's print at import
    # or in a job can break a line of the protocol.
    answers = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    started = time.time()
    why_not = cannot_fork_here()
    if why_not is None:
        warm_imports()
        settle()  # before any fork: a job's collections then never touch, and so never copy, the server's pages
        why_not = cannot_fork_after_imports()
    if why_not:
        print(f"job server: {why_not}; jobs start as new processes", file=sys.stderr, flush=True)
        return 1
    try:
        answers.write("ready\n")
        print(f"job server: ready in {time.time() - started:.1f} s (pid {os.getpid()})", file=sys.stderr, flush=True)
        return _serve_requests(answers, run_job, needs_bitsandbytes)
    except BrokenPipeError:  # the app stopped reading: it ended, or let this server go
        return 0


def _serve_requests(answers, run_job, needs_bitsandbytes) -> int:
    pending = b""
    while True:
        readable, _, _ = select.select([0], [], [], REAP_INTERVAL_S)
        _reap(answers)
        if not readable:
            continue
        chunk = os.read(0, 65536)
        if not chunk:
            return 0
        pending += chunk
        while b"\n" in pending:
            line, pending = pending.split(b"\n", 1)
            answers.write(_answer(json.loads(line), run_job, needs_bitsandbytes, answers) + "\n")


def _answer(request: dict, run_job, needs_bitsandbytes, answers) -> str:
    try:
        if needs_bitsandbytes(request["config"]):
            return "cold the run loads bitsandbytes"
    except Exception:  # noqa: BLE001 - a config the job cannot read is the job's to report, in its log
        pass
    sys.stdout.flush()
    sys.stderr.flush()
    session_made, say_made = os.pipe()
    pid = os.fork()
    if pid == 0:
        answers.close()
        os.close(session_made)
        _become_job(request, run_job, say_made)
    os.close(say_made)
    # Answer once the child leads its own process group: an abort right after the start signals that
    # group, and would find none yet (a Popen returns only after its child's setsid, too).
    os.read(session_made, 1)
    os.close(session_made)
    return f"started {pid}"


def _become_job(request: dict, run_job, say_made: int) -> None:
    """In the child: take the job's session, streams and environment, run it, and never return."""
    code = 1
    try:
        os.setsid()
        os.write(say_made, b"1")
        os.close(say_made)
        for signum in (signal.SIGTERM, signal.SIGINT, signal.SIGCHLD):
            signal.signal(signum, signal.SIG_DFL)
        os.environ.clear()
        # Not the niceness: the server lowered its own priority once, and the job inherits it.
        os.environ.update({k: v for k, v in request["env"].items() if k != NICE_ENV})
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        log = os.open(Path(request["log"]), os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        os.dup2(log, 1)
        os.dup2(log, 2)
        os.close(null)
        os.close(log)
        code = run_job(["--config", request["config"]])
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # noqa: BLE001 - the job's main reports its own errors; this is what escaped it
        import traceback

        traceback.print_exc()
    finally:
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):
                pass
        os._exit(code if isinstance(code, int) else 1)


def _reap(answers) -> None:
    while True:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        code = -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)
        answers.write(f"exited {pid} {code}\n")
