"""A sweep's Optuna study: where it is kept, how its trials map to runs, and what sweep_status says.

The study is the sweep's one record, so that a sweep survives the app and several machines can
share one (Optuna's RDB storage: the workspace's SQLite file by default, or any URL Optuna takes).
Its user attributes hold the spec, the sweep's status and the driver working on it; each trial's
hold its run id and, for a trial that did not complete, why.
"""

from __future__ import annotations

import os
import socket
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from backend.errors import TuneForgeError
from backend.sweeps.study_lock import study_lock
from backend.sweeps.sweep_spec import Range, SweepSpec, new_sweep_id, parse_spec

STORAGE_FILE = Path("sweeps") / "optuna.db"
ENDED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
# A storage (its SQL engine and pool) is built once per URL: the UI asks for a sweep's status every second.
_storages: dict[str, optuna.storages.BaseStorage] = {}
_storages_lock = threading.Lock()

# A driver records a heartbeat on the trial it follows every HEARTBEAT_S (in the database's clock, so the
# machines' clocks need not agree). A running trial silent for GRACE_BEATS of them has lost its driver and
# its machine with it: the next driver to choose a trial fails it and enqueues its values again.
HEARTBEAT_ENV = "TUNEFORGE_SWEEP_HEARTBEAT_S"
GRACE_BEATS = 6

optuna.logging.set_verbosity(optuna.logging.WARNING)  # trials report through the runs, not Optuna's log
warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)  # heartbeats are "experimental"
# Optuna's heartbeat thread belongs to Study.optimize; our drivers ask and tell, and beat in their own loop.
warnings.filterwarnings("ignore", message="Heartbeat of storage is supposed to be used with Study.optimize")


def heartbeat_s() -> int:
    try:
        return max(1, int(os.environ.get(HEARTBEAT_ENV, "10")))
    except ValueError:
        return 10


def default_storage(workspace: str | Path) -> str:
    path = Path(workspace).resolve() / STORAGE_FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{path}"


def storage_for(url: str) -> optuna.storages.BaseStorage:
    with _storages_lock:
        if url not in _storages:
            # SQLite: the app's drivers and status reads write and read from several threads; wait for
            # the lock rather than fail at once with "database is locked".
            engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {"pool_pre_ping": True}
            try:
                _storages[url] = optuna.storages.RDBStorage(
                    _with_driver(url),
                    engine_kwargs=engine,
                    heartbeat_interval=heartbeat_s(),
                    grace_period=heartbeat_s() * GRACE_BEATS,
                    heartbeat_stale_trial_callback=run_again,
                )
            except Exception as exc:  # noqa: BLE001 - a bad URL or an unreachable server, in one line
                raise TuneForgeError(f"optuna storage {url.split('@')[-1]}: {type(exc).__name__}: {exc}") from None
        return _storages[url]


def _with_driver(url: str) -> str:
    """postgresql:// names psycopg 3 (requirements.txt) whichever SQLAlchemy is installed: 2.0 would take psycopg2."""
    scheme, sep, rest = url.partition("://")
    return f"postgresql+psycopg://{rest}" if sep and scheme in ("postgresql", "postgres") else url


def study_engine(study: optuna.Study):
    """The SQL engine under a study's storage (Optuna wraps an RDB storage in a cache of its own)."""
    storage = study._storage  # noqa: SLF001 - where Optuna keeps it
    return getattr(storage, "_backend", storage).engine


def run_again(study: optuna.Study, lost: FrozenTrial) -> None:
    """A trial whose driver stopped answering is failed by Optuna; its values go back in the queue once."""
    study.enqueue_trial(lost.params, user_attrs={"retry_of": lost.number})


def lost_trials(trials: list[FrozenTrial]) -> dict[int, int]:
    """Lost trial number → the number of the trial that runs its values again."""
    return {t.user_attrs["retry_of"]: t.number for t in trials if "retry_of" in t.user_attrs}


def machine(trial: FrozenTrial) -> str:
    """Which machine's driver ran the trial (its host and process), for the trials table."""
    driver = trial.user_attrs.get("driver") or {}
    return f"{driver['host']} pid {driver['pid']}" if driver.get("host") else ""


def this_driver(workspace: str | Path, pid: int) -> dict[str, Any]:
    """Who is working on a sweep: a trial's run lives in this host's workspace."""
    return {"host": socket.gethostname(), "workspace": str(Path(workspace).resolve()), "pid": pid}


def sampler_for(spec: SweepSpec) -> optuna.samplers.BaseSampler:
    if spec.sampler == "tpe":
        return optuna.samplers.TPESampler(seed=spec.seed)
    # The grid's trials are all enqueued with their values (see create_study), so no sampler picks them.
    return optuna.samplers.RandomSampler(seed=spec.seed)


def pruner_for(spec: SweepSpec) -> optuna.pruners.BasePruner:
    if spec.pruner == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=spec.pruner_startup_trials, n_warmup_steps=0)


def distributions(spec: SweepSpec) -> dict[str, optuna.distributions.BaseDistribution]:
    found = {}
    for name, values in spec.space.items():
        if isinstance(values, Range) and spec.kinds[name] == "int":
            found[name] = IntDistribution(int(values.low), int(values.high), log=values.log)
        elif isinstance(values, Range):
            found[name] = FloatDistribution(values.low, values.high, log=values.log)
        else:
            found[name] = CategoricalDistribution(values)
    return found


def create_study(spec: SweepSpec, storage: str) -> optuna.Study:
    """A new study for the spec; or, where the spec names a sweep that exists, that sweep to join."""
    sweep_id = spec.name or new_sweep_id()
    # Two machines may start the same new sweep at the same moment: one of them creates it and enqueues
    # the grid while the other waits, then finds it created and joins.
    with study_lock(storage_for(storage).engine, sweep_id):
        return _create_or_join(spec, storage, sweep_id)


def _create_or_join(spec: SweepSpec, storage: str, sweep_id: str) -> optuna.Study:
    study = optuna.create_study(
        storage=storage_for(storage),
        study_name=sweep_id,
        direction=spec.direction,
        sampler=sampler_for(spec),
        pruner=pruner_for(spec),
        load_if_exists=True,
    )
    saved = study.user_attrs.get("spec")
    if saved is not None and saved != spec.to_dict() | {"name": sweep_id}:
        raise TuneForgeError(f"sweep {sweep_id} already exists with another spec; give this one another name")
    if saved is None:
        study.set_user_attr("spec", spec.to_dict() | {"name": sweep_id})
        study.set_user_attr("status", "running")
        study.set_user_attr("created", time.time())
        if spec.sampler == "grid":
            for params in spec.grid()[: spec.n_trials]:
                study.enqueue_trial(params)
    elif study.user_attrs.get("status") != "running":
        study.set_user_attr("status", "running")  # a stopped sweep, run again, goes on where it ended
    return study


def open_study(storage: str, sweep_id: str) -> tuple[optuna.Study, SweepSpec]:
    sweep_id = str(sweep_id).strip()
    try:
        study = optuna.load_study(study_name=sweep_id, storage=storage_for(storage))
    except KeyError:
        raise TuneForgeError(f"no sweep named '{sweep_id[:100]}'") from None
    spec = parse_spec(study.user_attrs.get("spec"))
    study.sampler, study.pruner = sampler_for(spec), pruner_for(spec)
    return study, spec


def sweep_ids(storage: str) -> list[str]:
    """Every sweep in the storage, newest first."""
    summaries = optuna.get_all_study_summaries(storage_for(storage), include_best_trial=False)
    summaries.sort(key=lambda s: s.datetime_start or s.user_attrs.get("created", 0), reverse=True)
    return [s.study_name for s in summaries if "spec" in s.user_attrs]


def trial_status(trial: FrozenTrial, sweep: str, run: dict[str, Any] | None, lost: bool = False) -> str:
    if lost:
        return "lost"
    if trial.state == TrialState.COMPLETE:
        return "completed"
    if trial.state == TrialState.PRUNED:
        return "pruned"
    if trial.state == TrialState.FAIL:
        return trial.user_attrs.get("status", "failed")
    if trial.state == TrialState.WAITING or "run_id" not in trial.user_attrs:
        return "aborted" if sweep == "aborted" else "queued"
    if run is None:  # a run on another machine sharing the study
        return "running"
    return "queued" if run["status"] == "queued" else "running"


def trial_row(trial: FrozenTrial, sweep: str, run: dict[str, Any] | None, again: int | None = None) -> dict[str, Any]:
    """again: for a lost trial, the trial that runs its values again."""
    status = trial_status(trial, sweep, run, lost=again is not None)
    error = trial.user_attrs.get("error")
    if again is not None:
        error = f"its driver ({machine(trial) or 'unknown'}) stopped answering; trial {again} runs these values again"
    return {
        "number": trial.number,
        "run_id": trial.user_attrs.get("run_id"),
        "params": trial.params or trial.system_attrs.get("fixed_params", {}),
        "status": status,
        "value": trial.value if status in ("completed", "pruned") else None,
        "step": (run or {}).get("step") or trial.last_step or 0,
        "duration_s": (run or {}).get("duration_s"),
        "machine": machine(trial),
        "error": error,
    }


def sweep_report(study: optuna.Study, run_of: Callable[[str], dict[str, Any] | None]) -> dict[str, Any]:
    """sweep_status: the sweep's status, its trials in order, and the best completed one."""
    attrs = study.user_attrs
    status = attrs.get("status", "running")
    frozen = study.get_trials(deepcopy=False)
    lost = lost_trials(frozen)
    trials = [trial_row(t, status, run_of(t.user_attrs["run_id"]) if "run_id" in t.user_attrs else None,
                        lost.get(t.number)) for t in frozen]  # fmt: skip
    done = [t for t in trials if t["status"] == "completed" and t["value"] is not None]
    pick = min if study.direction == optuna.study.StudyDirection.MINIMIZE else max
    best = pick(done, key=lambda t: t["value"]) if done else None
    spec = attrs.get("spec", {})
    return {
        "sweep_id": study.study_name,
        "status": status,
        "error": attrs.get("error"),
        "metric": spec.get("metric"),
        "direction": spec.get("direction"),
        "sampler": spec.get("sampler"),
        "n_trials": spec.get("n_trials"),
        "space": spec.get("space"),
        "owner": attrs.get("owner"),
        "trials": trials,
        "best": {k: best[k] for k in ("run_id", "params", "value")} if best else None,
    }
