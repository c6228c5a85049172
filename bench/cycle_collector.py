"""Benchmark: the studio's processes with their imports kept out of Python's cycle collections, against the
same processes with the collector as Python leaves it (backend.cycle_collector).

Two processes, each started fresh, as the studio starts them:
  - app: `python launch.py` on an empty workspace, until its page answers (then stopped);
  - job: `python -m backend.train` on the embedded SmolLM2-135M, 4 LoRA steps of the speed data (cutoff 128,
    no validation), precision auto.
The "python" trials put a sitecustomize first on the process's PYTHONPATH that turns hold() and settle() into
nothing, so the process runs Python's collector untouched; the "settled" trials run the product as it is.
Trials alternate, so a busy machine slows both alike. Each reports the child's wall, user and system seconds
(wait4) and the seconds its collections took (gc.callbacks, written at exit).

Usage: python bench/cycle_collector.py [--trials N] [--processes app,job]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trials import best, interleaved, machine, prepare, site_folder, without  # noqa: E402
from tests.helpers import start_app  # noqa: E402

MODES = ("settled", "python")
# Every collection's duration, summed, written when the process ends (or is stopped).
TIMED = """
import atexit, gc, json, os, signal, sys, time
_spent = [0.0, 0.0]
def _time(phase, info):
    if phase == "start":
        _spent[1] = time.perf_counter()
    else:
        _spent[0] += time.perf_counter() - _spent[1]
gc.callbacks.append(_time)
def _write():
    with open(os.environ["BENCH_GC_OUT"], "w") as f:
        json.dump({"collections_s": _spent[0]}, f)
atexit.register(_write)
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
"""
UNTOUCHED = without("backend.cycle_collector", "hold", "settle")


def start(kind: str, workdir: Path, name: str, env: dict) -> tuple[subprocess.Popen, Path]:
    if kind == "app":
        (workdir / name).mkdir()
        process, _ = start_app(workdir / name, env=env)  # returns once its page answers
        process.send_signal(signal.SIGTERM)
        return process, workdir / name
    run_dir = workdir / name
    options = {
        "dataset": ROOT / "bench" / "data" / "speed_train.json",
        "val_size": 0,
        "cutoff_len": 128,
        "max_steps": 4,
        "save_steps": 0,
        "output_dir": run_dir,
    }
    config = workdir / f"{name}.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in options.items()))
    command = [sys.executable, "-m", "backend.train", "--config", str(config)]
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL), run_dir


def trial(kind: str, mode: str, workdir: Path, number: int) -> dict:
    name = f"{kind}-{mode}-{number}"
    site = site_folder(workdir, name, TIMED + (UNTOUCHED if mode == "python" else ""))
    gc_out = workdir / f"{name}.gc.json"
    env = {**os.environ, "PYTHONPATH": str(site), "BENCH_GC_OUT": str(gc_out), "TUNEFORGE_WARM_JOBS": "0"}
    began = time.time()
    process, _ = start(kind, workdir, name, env)
    _, status, usage = os.wait4(process.pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code not in (0, -signal.SIGTERM):
        raise SystemExit(f"{name}: exited with {code}")
    return {
        "wall_s": round(time.time() - began, 2),
        "cpu_s": round(usage.ru_utime + usage.ru_stime, 2),
        "collections_s": round(json.loads(gc_out.read_text())["collections_s"], 2),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    parser.add_argument("--processes", default="app,job")
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    workdir = prepare("tuneforge-collector-")
    kinds = [kind for kind in args.processes.split(",") if kind]
    results = interleaved(kinds, MODES, args.trials, lambda kind, mode, number: trial(kind, mode, workdir, number))
    least = best(results, "cpu_s")
    print(
        json.dumps(
            {
                "machine": machine(),
                "trials": results,
                "best_cpu_s": least,
                "cpu_saved_s": {kind: round(b["python"] - b["settled"], 2) for kind, b in least.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
