"""The app's sweeps: start one (a driver thread beside the job manager), report it, abort it, pick it up again.

A sweep's record is its Optuna study (backend.sweeps.study), not this object: an app that was
killed mid-sweep finds, when it starts again, every sweep of its workspace still marked running
whose driver is gone, and drives it on. The trial that was training meanwhile kept training.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import psutil

from backend.config import options_where
from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from backend.sweeps.driver import SweepDriver
from backend.sweeps.figures import sweep_figures
from backend.sweeps.study import (
    STORAGE_FILE,
    create_study,
    default_storage,
    open_study,
    sweep_ids,
    sweep_report,
    this_driver,
)
from backend.sweeps.sweep_spec import SweepSpec, parse_spec

# The options that name a path a trial may vary: each value a sweep would try is checked like a Start's.
READS = tuple(name for name in options_where("path") if name not in options_where("not_searched"))


class SweepManager:
    def __init__(self, jobs: JobManager, storage: str | None = None, resume: bool = True):
        """resume: drive on the workspace's sweeps whose driver is gone (the app; not the CLI, which drives one)."""
        self.jobs = jobs
        self.storage = storage or default_storage(jobs.workspace)
        self._lock = threading.Lock()
        self._drivers: dict[str, tuple[threading.Thread, threading.Event]] = {}
        # A workspace that never swept has no study file: an app's start does not create one for nothing.
        if resume and (storage or (jobs.workspace / STORAGE_FILE).exists()):
            self._resume_orphans()

    def start(self, raw: dict[str, Any], owner: str | None = None) -> str:
        """Check the spec and every value it would try, then drive the sweep in a thread; its id.

        owner: the login name that started it, which owns the sweep and its trials' runs."""
        sweep_id = self.create(raw, owner)
        self._drive(sweep_id)
        return sweep_id

    def create(self, raw: dict[str, Any], owner: str | None = None) -> str:
        """The spec checked, and its study created (or, for a sweep of that name, joined); the sweep's id."""
        spec = parse_spec(raw)
        self._check_like_a_start(spec)
        if spec.name:
            self._refuse_if_running(spec.name)
        study = create_study(spec, self.storage)
        if owner and "owner" not in study.user_attrs:
            study.set_user_attr("owner", owner)
        return study.study_name

    def owner(self, sweep_id: str) -> str | None:
        study, _ = open_study(self.storage, sweep_id)
        return study.user_attrs.get("owner")

    def _refuse_if_running(self, sweep_id: str) -> None:
        """A stored sweep of that name may be run again (it goes on), unless a live driver still runs it."""
        try:
            study, _ = open_study(self.storage, sweep_id)
        except TuneForgeError:
            return  # a new sweep
        if study.user_attrs.get("status") != "running":
            return
        with self._lock:
            thread, _ = self._drivers.get(sweep_id, (None, None))
        driver = study.user_attrs.get("driver")
        # Another workspace's driver, here or elsewhere, is another machine sharing the study: welcome.
        ours = driver and driver.get("workspace") == _here(self.jobs.workspace)[1]
        if (thread and thread.is_alive()) or (ours and _drives_now(driver, self.jobs.workspace)):
            raise TuneForgeError(f"sweep {sweep_id} is already running")

    def driver(self, sweep_id: str, stop: threading.Event, say=lambda line: None) -> SweepDriver:
        study, spec = open_study(self.storage, sweep_id)
        return SweepDriver(self.jobs, study, spec, stop, os.getpid(), say)

    def _check_like_a_start(self, spec: SweepSpec) -> None:
        if spec.base.get("output_dir"):
            raise TuneForgeError("base: output_dir is not for a sweep; each trial gets its own run folder")
        self.jobs.prepare(spec.base)
        for name in READS:
            for value in spec.space.get(name, []):
                try:
                    self.jobs.prepare({**spec.base, name: value})
                except TuneForgeError as exc:
                    raise TuneForgeError(f"space.{name}: {exc}") from None

    def _drive(self, sweep_id: str) -> None:
        stop = threading.Event()
        thread = threading.Thread(target=self.driver(sweep_id, stop).run, name=f"sweep-{sweep_id}", daemon=True)
        with self._lock:
            self._drivers[sweep_id] = (thread, stop)
        thread.start()

    def _resume_orphans(self) -> None:
        for sweep_id in sweep_ids(self.storage):
            study, _ = open_study(self.storage, sweep_id)
            driver = study.user_attrs.get("driver")
            mine = driver and (driver["host"], driver["workspace"]) == _here(self.jobs.workspace)
            if study.user_attrs.get("status") == "running" and mine and not _drives_now(driver, self.jobs.workspace):
                self._drive(sweep_id)

    def status(self, sweep_id: str) -> dict[str, Any]:
        study, _ = open_study(self.storage, sweep_id)
        return sweep_report(study, self._run_summary)

    def _run_summary(self, run_id: str) -> dict[str, Any] | None:
        try:
            return self.jobs.status(run_id)
        except TuneForgeError:  # a run in another machine's workspace
            return None

    def sweep_ids(self) -> list[str]:
        return sweep_ids(self.storage)

    def list_sweeps(self) -> list[dict[str, Any]]:
        """Every sweep, newest first: id, status, trials ended of n_trials, best value."""
        rows = []
        for sweep_id in self.sweep_ids():
            report = self.status(sweep_id)
            ended = sum(t["status"] not in ("queued", "running", "lost") for t in report["trials"])
            best = report["best"]
            rows.append(
                {
                    "sweep_id": sweep_id,
                    "status": report["status"],
                    "trials": f"{ended}/{report['n_trials']}",
                    "metric": report["metric"],
                    "best": best["value"] if best else None,
                }
            )
        return rows

    def figures(self, sweep_id: str) -> dict[str, Any]:
        study, _ = open_study(self.storage, sweep_id)
        return sweep_figures(study)

    def abort(self, sweep_id: str) -> None:
        """Stop the sweep: its running trial is aborted, and no trial starts after it."""
        study, _ = open_study(self.storage, sweep_id)
        with self._lock:
            thread, stop = self._drivers.get(study.study_name, (None, None))
        if thread is None:
            if study.user_attrs.get("status") == "running":
                study.set_user_attr("status", "aborted")  # driven from elsewhere: its driver sees this
            return
        stop.set()
        thread.join(timeout=30)

    def shutdown(self) -> None:
        with self._lock:
            drivers = list(self._drivers.values())
        for _, stop in drivers:
            stop.set()


def _here(workspace) -> tuple[str, str]:
    me = this_driver(workspace, os.getpid())
    return me["host"], me["workspace"]


def _drives_now(driver: dict[str, Any], workspace) -> bool:
    """Whether the process recorded as the sweep's driver is alive on this host (another app, a CLI)."""
    if driver.get("host") != _here(workspace)[0]:
        return False  # another machine's: Optuna's storage lets both work on the study
    pid = driver.get("pid")
    if pid == os.getpid():
        return False  # this process's own drivers are its threads
    try:
        process = psutil.Process(pid)
        return process.is_running() and process.status() != psutil.STATUS_ZOMBIE
    except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError, ValueError):
        return False
