"""Run a hyperparameter sweep from a terminal: `python -m backend.sweep --config sweep.yaml`.

sweep.yaml has the keys of the API's sweep_start spec (backend.sweeps.sweep_spec): base, space, sampler,
n_trials, metric, direction, pruner, pruner_startup_trials, name, seed. Each trial is an ordinary
run in the workspace's runs/ (the app lists it, tagged with the sweep), one after another.

The study lives in the workspace's sweeps/optuna.db, or in --optuna-storage (any database URL
Optuna takes, such as postgresql://user@host/db): machines that run the same sweep.yaml, with a
`name`, against one storage work on one study. Run the command again after it was stopped, and
the sweep goes on where it ended. Ctrl-C aborts the running trial and stops the sweep.

Prints a line per trial, then sweep_status as JSON. Exit codes: 0 completed, 2 a spec refused (one
line on stderr, before any trial starts), 1 the sweep failed, 130 aborted.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from backend.config import parse_yaml, read_config_text
from backend.errors import TuneForgeError
from backend.paths import default_workspace
from backend.runs.job_manager import JobManager
from backend.sweeps.sweep_manager import SweepManager


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.sweep", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the sweep spec, as YAML")
    parser.add_argument(
        "--workspace",
        default=None,
        help="where runs and the study live (default: $TUNEFORGE_WORKSPACE or the project's workspace/)",
    )
    parser.add_argument("--optuna-storage", default=None, metavar="URL", help="an Optuna storage URL to share")
    args = parser.parse_args(argv)
    try:
        raw = parse_yaml(read_config_text(args.config), args.config)
        jobs = JobManager(args.workspace or default_workspace())
        sweeps = SweepManager(jobs, args.optuna_storage, resume=False)
        sweep_id = sweeps.create(raw)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    stop = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, lambda *_: stop.set())
    print(f"sweep {sweep_id}: study in {sweeps.storage.split('@')[-1]}", flush=True)
    try:
        status = sweeps.driver(sweep_id, stop, say=lambda line: print(line, flush=True)).run()
    except Exception as exc:  # noqa: BLE001 - the study says the sweep failed; the terminal gets one line
        print(f"error: sweep {sweep_id} failed: {type(exc).__name__}: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        jobs.shutdown()
    print(json.dumps(sweeps.status(sweep_id), indent=1, default=str), flush=True)
    return {"completed": 0, "aborted": 130}.get(status, 1)


if __name__ == "__main__":
    sys.exit(main())
