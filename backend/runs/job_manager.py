"""The job manager: start, queue, watch and abort training jobs in the workspace.

Every job is `python -m backend.train --config <run_dir>/run.yaml`, started in its own
process group with stdout/stderr going to `<run_dir>/train.log`: forked from the warm job
server when it is ready (backend.runs.warm_jobs; training starts without ~12 s of imports),
else a new process. Nothing of a job lives in this process except a handle to its process:
status comes from the run directory's files, so a job carries on if the browser (or this
whole app) goes away, and runs started from a terminal show up here too.

Jobs run one at a time (two on a 2-core machine would each crawl); later ones wait as queued.
Benchmark and judge jobs (backend.evaluation.eval_jobs) take their turn in the same line: one
queued while a run trains starts when it ends, and a run started while a benchmark runs waits for
it. The line is first come, first served, whatever the kind.
A job that a previous app process started and that still runs is adopted: it counts as the
running job, its status streams as before, and abort reaches it through the pid it recorded.
A job that died without reporting its end is `interrupted`, and resume() continues it from its
last whole checkpoint.
"""

from __future__ import annotations

import itertools
import json
import os
import shlex
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from backend.access.confine import Confinement, refuse_nul, short
from backend.admission import admit
from backend.capability import hardware_summary, uses_bitsandbytes
from backend.checkpoints import checkpoints
from backend.config import TrainConfig
from backend.data.registry import resolve_all
from backend.errors import TuneForgeError, signal_name
from backend.events import EventLog, EventsCache, end_event, timeline
from backend.files import write_text_atomically
from backend.paths import PROJECT_ROOT
from backend.runfiles import (
    CONFIG_FILE,
    EVENTS_FILE,
    JOB_MODULE,
    LOG_FILE,
    LOG_REDIRECTED_ENV,
    NICE_ENV,
    RUN_FILE,
    SWEEP_FILE,
    new_run_id,
)
from backend.runs.run_summary import is_job_process, job_pid, read_owner, summarize, write_owner
from backend.runs.stopping import stop_group
from backend.runs.warm_jobs import ForkedJob, JobServer, warm_server, worth_waiting_for

# Jobs run this far below the app's CPU priority, so status reads and chat stay quick while one trains.
JOB_NICENESS = 10
MAX_RUN_NAME = 200  # file systems refuse names past 255 bytes; leave room for suffixes
RESUMABLE = ("interrupted", "failed", "aborted")


def train_command(config_path: str | Path) -> list[str]:
    return [sys.executable, "-m", JOB_MODULE, "--config", str(config_path)]


class JobManager:
    def __init__(self, workspace: str | Path, confinement: Confinement | None = None):
        """confinement: the folders that browser and API callers may name; the app always passes one."""
        self.workspace = Path(workspace).expanduser().resolve()
        self.confinement = confinement or Confinement.off(self.workspace)
        self.runs_dir = self.workspace / "runs"
        self.runs_dir.mkdir(parents=True, exist_ok=True)
        self._lock = threading.RLock()
        self._pending: deque[str] = deque()
        # Other kinds of job in the same line (benchmarks, judges): their queued keys and how to start
        # each, and for each kind whether one of its jobs runs now.
        self._guests: dict[str, Callable[[], None]] = {}
        self._guest_kinds: list[Callable[[], bool]] = []
        self._running: dict[str, subprocess.Popen | ForkedJob] = {}
        # Queued runs the job server can fork (they load no bitsandbytes), and since when the next to start
        # has waited for the server's imports (warm_jobs.worth_waiting_for).
        self._forkable: set[str] = set()
        self._waiting: dict[str, float] = {}
        # Jobs an abort is stopping: their end is "aborted", whatever signal they die of, so the
        # watcher leaves them to abort() instead of reporting the exit as an interruption.
        self._aborting: set[str] = set()
        self._events = EventsCache()
        self._adopted = self._find_live_jobs()  # run dir -> pid, for jobs an earlier app process started
        self._watcher = threading.Thread(target=self._watch, name="job-watcher", daemon=True)
        self._watcher.start()

    # ---- starting -------------------------------------------------------------------
    def prepare(self, options: dict[str, Any]) -> tuple[str, TrainConfig]:
        """Validate options and give the run its id and directory (not yet written)."""
        config = TrainConfig.from_dict(options)
        self.confinement.options(config)  # before anything is read or written on the caller's word
        config.output_dir = str(self._new_run_dir(config.output_dir))
        admit(config, hardware_summary())  # what the job would refuse, refused before it queues, in its words
        resolve_all(config.dataset, self.workspace, config.dataset_dir)  # fails here, not minutes later in the job
        if config.node_rank:
            raise TuneForgeError(
                f"node_rank={config.node_rank}: start the other nodes from a terminal with the same config "
                "(docs/multi-node.md); the app starts and follows node 0"
            )
        return Path(config.output_dir).name, config

    def _new_run_dir(self, output_dir: str) -> Path:
        """The folder a new run gets: a fresh id, or the run name output_dir gives."""
        if not output_dir:
            return self.runs_dir / new_run_id()
        # The UI only knows runs in its workspace, so output_dir names one of them.
        named = Path(output_dir).expanduser()
        run_dir = (named if named.is_absolute() else self.runs_dir / named).resolve()
        if run_dir.parent != self.runs_dir:
            raise TuneForgeError(f"output_dir must be a run name or a folder directly inside {self.runs_dir}")
        if len(run_dir.name) > MAX_RUN_NAME:
            raise TuneForgeError(f"output_dir: a run name has at most {MAX_RUN_NAME} characters")
        return run_dir

    def preview(self, options: dict[str, Any]) -> tuple[str, str]:
        """The YAML and the shell command that reproduce a UI run from a terminal."""
        config = TrainConfig.from_dict(options)
        text = config.to_yaml()
        cmd = "python -m backend.train --config run.yaml"
        return text, cmd

    def start(self, options: dict[str, Any], sweep: dict[str, Any] | None = None, owner: str | None = None) -> str:
        """Validate, write the run folder and queue the job.

        sweep: the sweep and trial a sweep's run belongs to; owner: the login name of who started it.
        """
        run_id, config = self.prepare(options)
        run_dir = Path(config.output_dir)
        try:
            # A folder that exists is a run in some state (queued ones have no events yet): never reused, and
            # made with exist_ok=False so two starts naming the same folder cannot both get it.
            run_dir.mkdir(parents=True, exist_ok=False)
        except FileExistsError:
            raise TuneForgeError(
                f"output_dir {run_id} already names a run (queued, running or ended); choose another name"
            ) from None
        except OSError as exc:
            raise TuneForgeError(f"cannot create run folder {run_id[:80]}: {exc.strerror or exc}") from None
        try:
            write_text_atomically(run_dir / RUN_FILE, config.to_yaml())
            if sweep:
                write_text_atomically(run_dir / SWEEP_FILE, json.dumps(sweep))
            write_owner(run_dir, owner)
        except OSError as exc:  # a name too long for the file system, a full disk
            raise TuneForgeError(f"cannot create run folder {run_id[:80]}: {exc.strerror or exc}") from None
        forkable = not uses_bitsandbytes(config)  # it may read the model's config.json: not under the lock
        with self._lock:
            self._pending.append(str(run_dir))
            if forkable:
                self._forkable.add(str(run_dir))
        self._advance()
        return run_id

    def resume(self, run_id: str, overrides: dict[str, Any] | None = None) -> str:
        """Queue an interrupted (or failed, or aborted) run to continue from its last whole checkpoint.

        overrides may change hyperparameters such as num_train_epochs, but not the model, method or
        adapter shape, which the checkpoint was trained with.
        """
        run_dir = self.run_dir(run_id)
        state = self.status(run_id)["status"]
        if state not in RESUMABLE:
            raise TuneForgeError(f"run {run_id} is {state}; only an interrupted, failed or aborted run can resume")
        options = {**self.config(run_id), **(overrides or {})}
        options.update(output_dir=str(run_dir), resume_from_checkpoint="last")
        config = TrainConfig.from_dict(options)
        self.confinement.options(config, only=overrides or ())  # the run's own options were checked at its start
        checkpoint = admit(config, hardware_summary()).resume_from  # refuse now, in the UI, rather than in the job
        self._reap_ended(run_dir)
        write_text_atomically(run_dir / RUN_FILE, config.to_yaml())
        EventLog(run_dir).emit("resume", checkpoint=checkpoint.name)  # the old end no longer describes the run
        forkable = not uses_bitsandbytes(config)
        with self._lock:
            self._pending.append(str(run_dir))
            if forkable:
                self._forkable.add(str(run_dir))
        self._advance()
        return run_dir.name

    def _reap_ended(self, run_dir: Path) -> None:
        """Wait out a job that wrote its end but is still exiting (a traceback, teardown).

        Reaped later, after the resume event, its exit would read as the end of the new attempt.
        """
        with self._lock:
            proc = self._running.get(str(run_dir))
        if proc is None:
            return
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            stop_group(proc.pid, lambda: proc.poll() is not None)
        with self._lock:
            self._running.pop(str(run_dir), None)

    def _job_env(self) -> dict[str, str]:
        return {
            **os.environ,
            LOG_REDIRECTED_ENV: "1",
            "PYTHONUNBUFFERED": "1",
            "TUNEFORGE_WORKSPACE": str(self.workspace),
            NICE_ENV: str(JOB_NICENESS),
        }

    def warm_up(self) -> None:
        """Start the warm job server now (the app, at its start), so that the first job starts at once too."""
        warm_server(self._job_env())

    def _launch(self, run_dir: Path) -> None:
        env = self._job_env()
        command = train_command(run_dir / RUN_FILE)
        with open(run_dir / LOG_FILE, "ab") as log:
            log.write(f"$ {shlex.join(command)}\n".encode())
            self._forkable.discard(str(run_dir))
            if (since := self._waiting.pop(str(run_dir), None)) is not None:
                log.write(f"(waited {time.monotonic() - since:.1f} s for the warm job server's imports)\n".encode())
            log.flush()
            server = warm_server(env)
            job = server.start(run_dir / RUN_FILE, run_dir / LOG_FILE, env) if isinstance(server, JobServer) else server
            if isinstance(job, str):
                log.write(f"(a new process, not the warm job server: {job})\n".encode())
                log.flush()
            self._running[str(run_dir)] = (
                job
                if isinstance(job, ForkedJob)
                else subprocess.Popen(
                    command,
                    cwd=PROJECT_ROOT,
                    env=env,
                    stdin=subprocess.DEVNULL,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # own process group: abort kills the whole tree
                )
            )

    def _advance(self) -> None:
        """Reap finished jobs and start the next queued one if nothing is running."""
        with self._lock:
            for key, proc in list(self._running.items()):
                if isinstance(proc, ForkedJob) and proc.orphaned:  # its server ended: follow it by pid
                    del self._running[key]
                    self._adopted[key] = proc.pid
                    continue
                code = proc.poll()
                if code is None or key in self._aborting:
                    continue
                del self._running[key]
                if end_event(self._events.read(key)) is None:
                    EventLog(key).emit("end", **exit_reason(code, Path(key)))
            for key, pid in list(self._adopted.items()):
                if is_job_process(pid) or key in self._aborting:
                    continue
                del self._adopted[key]
                if end_event(self._events.read(key)) is None:
                    EventLog(key).emit("end", **exit_reason(None, Path(key)))
            while self._pending and not self.busy():
                if self._waits_for_server(self._pending[0]):
                    break  # the watcher asks again in half a second
                key = self._pending.popleft()
                guest = self._guests.pop(key, None)
                if guest is not None:
                    guest()
                else:
                    self._launch(Path(key))

    def _waits_for_server(self, key: str) -> bool:
        """Whether the next run waits for the job server's imports rather than starting as a new process now."""
        if key not in self._forkable or not worth_waiting_for(self._job_env()):
            return False
        self._waiting.setdefault(key, time.monotonic())
        return True

    def training(self) -> bool:
        """Whether a training job (this app's or one an earlier app process started) is running now."""
        with self._lock:
            return bool(self._running or self._adopted)

    def busy(self) -> bool:
        """Whether any job in the line runs now: a training run, a benchmark or a judge."""
        with self._lock:
            return self.training() or any(running() for running in self._guest_kinds)

    # ---- other kinds of job in the line ---------------------------------------------
    def share_line(self, running: Callable[[], bool]) -> None:
        """Make a kind of job wait its turn with training: running says whether one of that kind runs now.

        running is called with this manager's lock held, so it must not call back into the manager.
        """
        with self._lock:
            self._guest_kinds.append(running)

    def enqueue(self, key: str, start: Callable[[], None]) -> None:
        """Queue another kind's job (key: its folder); start() starts it when its turn comes."""
        with self._lock:
            self._guests[key] = start
            self._pending.append(key)
        self._advance()

    def dequeue(self, key: str) -> bool:
        """Take a queued job off the line; False when it was not waiting (it started, or never queued)."""
        with self._lock:
            if key not in self._pending:
                return False
            self._pending.remove(key)
            self._guests.pop(key, None)
            return True

    def position(self, key: str) -> int | None:
        """1 for the next job to start (key: a run's or another job's folder); None when it is not queued.

        A run waiting for the job server's imports is starting, not in line: the places behind it stay as
        they will be once it runs."""
        with self._lock:
            if key not in self._pending or key in self._waiting:
                return None
            ahead = itertools.islice(self._pending, self._pending.index(key))
            return 1 + sum(1 for other in ahead if other not in self._waiting)

    def _find_live_jobs(self) -> dict[str, int]:
        live = {}
        for path in self.runs_dir.iterdir():
            events = self._events.read(path) if (path / EVENTS_FILE).exists() else []
            pid = job_pid(events)
            if pid and end_event(events) is None and is_job_process(pid):
                live[str(path)] = pid
        return live

    def _watch(self) -> None:
        while True:
            time.sleep(0.5)
            try:
                self._advance()
            except Exception as exc:  # noqa: BLE001 - the watcher must outlive one bad run dir
                print(f"job watcher: {exc}", file=sys.stderr)

    # ---- reading ----------------------------------------------------------------------
    def run_dir(self, run_id: str) -> Path:
        run_id = str(run_id).strip()
        if len(run_id) > MAX_RUN_NAME:
            raise TuneForgeError(f"no run named {short(run_id, 40)!r}: a run id has at most {MAX_RUN_NAME} characters")
        refuse_nul(run_id, "run id")
        path = (self.runs_dir / run_id).resolve()
        if path.parent != self.runs_dir or not path.is_dir():
            raise TuneForgeError(f"no run named '{run_id}' in {self.runs_dir}")
        return path

    def status(self, run_id: str) -> dict[str, Any]:
        self._advance()  # reap a job that just died, so its end names the cause rather than a guess
        return self._summary(self.run_dir(run_id))

    def _summary(self, run_dir: Path) -> dict[str, Any]:
        return summarize(
            run_dir,
            self._events.read(run_dir),
            queue_position=self._queue_position(run_dir.name),
            alive=self._is_alive(run_dir.name),
            starting=str(run_dir) in self._waiting,
        )

    def events(self, run_id: str) -> list[dict[str, Any]]:
        """The run's events as one history: a resume replaces what its earlier attempt logged past the checkpoint."""
        return timeline(self._events.read(self.run_dir(run_id)))

    def log_tail(self, run_id: str, lines: int = 40) -> str:
        try:
            with open(self.run_dir(run_id) / LOG_FILE, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - 64 * 1024))
                text = f.read().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return ""
        # tqdm redraws with carriage returns; keep only the last state of each line
        cleaned = [line.rsplit("\r", 1)[-1] for line in text.splitlines()]
        return "\n".join(cleaned[-lines:])

    def list_runs(self) -> list[dict[str, Any]]:
        self._advance()
        runs = []
        for path in sorted(self.runs_dir.iterdir(), reverse=True):
            if path.is_dir() and ((path / RUN_FILE).exists() or (path / EVENTS_FILE).exists()):
                runs.append(self._summary(path))
        return runs

    def queue(self) -> list[str]:
        """Queued run ids, next to start first (benchmarks and judges in the line are left out)."""
        with self._lock:
            return [Path(p).name for p in self._pending if p not in self._guests and p not in self._waiting]

    def finished_runs(self) -> list[str]:
        return [r["run_id"] for r in self.list_runs() if r["status"] == "completed"]

    def owner(self, run_id: str) -> str | None:
        """The login name that started the run; None for a run made without a login."""
        return read_owner(self.run_dir(run_id))

    def config(self, run_id: str) -> dict[str, Any]:
        run_dir = self.run_dir(run_id)
        for name in (CONFIG_FILE, RUN_FILE):
            if (run_dir / name).exists():
                return yaml.safe_load((run_dir / name).read_text(encoding="utf-8")) or {}
        return {}

    def _queue_position(self, run_id: str) -> int | None:
        """1 for the next run to start; None when the run is not queued."""
        return self.position(str(self.runs_dir / run_id))

    def _is_alive(self, run_id: str) -> bool | None:
        """True/False for jobs this manager runs or adopted; None when it cannot know (started elsewhere)."""
        with self._lock:
            for key, proc in self._running.items():
                if Path(key).name == run_id:
                    return proc.poll() is None
            for key, pid in self._adopted.items():
                if Path(key).name == run_id:
                    return is_job_process(pid)
        return None

    # ---- stopping ---------------------------------------------------------------------
    def abort(self, run_id: str, reason: str = "") -> None:
        """Stop the run's job (or take it off the queue); reason: why, when it was not the user who asked."""
        run_dir = self.run_dir(run_id)
        key = str(run_dir)
        with self._lock:
            if key in self._pending:
                self._pending.remove(key)
                self._forkable.discard(key)
                self._waiting.pop(key, None)
                EventLog(run_dir).emit("end", status="aborted", error=reason or "aborted before it started")
                return
            if reason:  # before the job's own end, which says only that it was aborted
                EventLog(run_dir).emit("abort", reason=reason)
            proc = self._running.get(key)
            self._aborting.add(key)
        try:
            # A job stopped before its own SIGTERM handler is installed (in its first second) dies of
            # the signal without writing its end; the end written below still says it was aborted.
            if proc is not None:
                stop_group(proc.pid, lambda: proc.poll() is not None)
            else:
                pid = job_pid(self._events.read(run_dir))
                if pid is not None and is_job_process(pid):
                    stop_group(pid, lambda: not is_job_process(pid))
            if end_event(self._events.read(run_dir)) is None:
                EventLog(run_dir).emit("end", status="aborted", error="aborted by the user")
        finally:
            with self._lock:
                self._aborting.discard(key)
        self._advance()

    def shutdown(self) -> None:
        """Stop every job this manager started (the app is closing)."""
        with self._lock:
            self._pending.clear()
            self._guests.clear()
            running = list(self._running)
        for key in running:
            self.abort(Path(key).name)


def exit_reason(code: int | None, run_dir: Path) -> dict[str, str]:
    """The end event for a job that died without reporting its end (code None: its exit is unknown).

    A job killed by a signal, or one that vanished, was interrupted mid-run and can resume; one that
    exited with an error code without saying why failed.
    """
    resumable = bool(checkpoints(run_dir))
    after = (
        "; resume it to continue from its last checkpoint"
        if resumable
        else "; its log is kept in the run folder (it saved no checkpoint to resume from)"
    )
    if code is None:
        return {"status": "interrupted", "error": "the job stopped without reporting an end" + after}
    if code < 0:
        name = signal_name(code)
        hint = " (the system may have run out of memory)" if -code == signal.SIGKILL else ""
        return {"status": "interrupted", "error": f"the job was killed by {name}{hint}" + after}
    return {"status": "failed", "error": f"the job exited with code {code} without reporting why; see train.log"}
