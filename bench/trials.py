"""What the benchmarks that run one process several ways share: the embedded model ready offline, a fresh
work folder, trials interleaved so that a busy machine slows every way alike, and the machine's line.

Used by bench/freed_memory.py, bench/cycle_collector.py, bench/cpu_levers.py, bench/labelled_positions.py,
bench/head_input.py and bench/app_start.py.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def prepare(prefix: str) -> Path:
    """Offline, the embedded SmolLM2 converted once, and a new work folder for this run's trials."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.models.sources import default_model_dir

    default_model_dir(progress=lambda msg: None)
    return Path(tempfile.mkdtemp(prefix=prefix))


def interleaved(kinds: Iterable[str], modes: Iterable[str], trials: int, run: Callable) -> dict[str, dict[str, list]]:
    """run(kind, mode, number) for each kind, trial after trial, each trial every mode in turn; each result is
    also printed to stderr as it comes."""
    modes = list(modes)
    results: dict[str, dict[str, list]] = {}
    for kind in kinds:
        results[kind] = {mode: [] for mode in modes}
        for number in range(trials):
            for mode in modes:
                results[kind][mode].append(run(kind, mode, number))
                print(kind, mode, results[kind][mode][-1], file=sys.stderr, flush=True)
    return results


def without(module: str, *functions: str, stub: str = "lambda: None") -> str:
    """A sitecustomize's source that turns the module's functions into the stub (by default, nothing): the
    product without that change, in a process started fresh."""
    stubs = " = ".join(f"changed.{name}" for name in functions)
    return (
        "import sys\n"
        f"sys.path.insert(0, {str(ROOT)!r})  # the entry's own folder joins sys.path only after site has run\n"
        f"import {module} as changed\n"
        f"{stubs} = {stub}\n"
    )


def site_folder(workdir: Path, name: str, source: str) -> Path:
    """A folder holding a sitecustomize of that source, for the front of a trial's PYTHONPATH."""
    site = workdir / f"site-{name}"
    site.mkdir()
    (site / "sitecustomize.py").write_text(source)
    return site


def job_trial(workdir: Path, name: str, options: dict, site_source: str, kept: Iterable[str]) -> dict:
    """One training job started fresh as the studio starts it (`python -m backend.train`, torch on one thread
    as in the test suite), with a sitecustomize of site_source first on its PYTHONPATH: its wall and CPU seconds
    (wait4) and the metrics of `kept` it ended with."""
    site = site_folder(workdir, name, site_source)
    run_dir = workdir / name
    config = workdir / f"{name}.yaml"
    settings = {**options, "save_steps": 0, "report_to": "none", "output_dir": str(run_dir)}
    config.write_text(json.dumps(settings))  # YAML reads JSON
    env = {**os.environ, "PYTHONPATH": str(site), "OMP_NUM_THREADS": "1"}
    began = time.time()
    command = [sys.executable, "-m", "backend.train", "--config", str(config)]
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL)
    _, status, usage = os.wait4(process.pid, 0)
    if code := os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{name}: exited with {code}; see {run_dir / 'train.log'}")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    return {
        "wall_s": round(time.time() - began, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "metrics": {key: metrics[key] for key in kept if key in metrics},
    }


def best(results: dict[str, dict[str, list]], key: str) -> dict[str, dict[str, float]]:
    """The lowest `key` of each kind's trials in each mode: the run least slowed by whatever else the machine ran."""
    return {kind: {mode: min(r[key] for r in runs) for mode, runs in modes.items()} for kind, modes in results.items()}


def machine() -> str:
    return f"{platform.machine()}, {os.cpu_count()} logical cores, {platform.processor() or 'cpu'}"
