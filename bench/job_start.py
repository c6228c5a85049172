"""Benchmark: how long a Start takes to reach its first step, as a new process and forked from the warm job server.

Runs the same three-step job (the embedded model, demo_identity) through the job manager, cold (every job a
new process) and warm (forked from the server, once it is ready). Prints JSON: for each, the seconds from
start() to the first step's event and to the end, the server's time to ready, and its memory while idle
(RSS and PSS: most of its pages are shared with the jobs it forks).
Usage: python bench/job_start.py [--repeats N]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def one_run(jobs, options: dict) -> tuple[float, float]:
    """(seconds to the first step's event, seconds to the end) of one run."""
    began = time.perf_counter()
    run_id = jobs.start(options)
    first_step = None
    while (state := jobs.status(run_id)["status"]) in ("queued", "running"):
        if first_step is None and any(e["type"] == "log" for e in jobs.events(run_id)):
            first_step = time.perf_counter() - began
        time.sleep(0.05)
    if state != "completed":
        raise SystemExit(f"run {run_id} ended {state}: see {jobs.run_dir(run_id) / 'train.log'}")
    ended = time.perf_counter() - began
    return first_step or ended, ended


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    from backend.runfiles import WARM_JOBS_ENV
    from backend.runs import warm_jobs
    from backend.runs.job_manager import JobManager

    jobs = JobManager(Path(tempfile.mkdtemp(prefix="tuneforge-bench-")))
    options = {"dataset": "demo_identity", "max_steps": 3, "val_size": 0, "save_steps": 0, "report_to": "none"}
    result = {
        "benchmark": "job_start",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
    }
    os.environ[WARM_JOBS_ENV] = "0"
    cold = [one_run(jobs, options) for _ in range(args.repeats)]
    os.environ[WARM_JOBS_ENV] = "1"
    began = time.perf_counter()
    jobs.warm_up()
    if not warm_jobs.wait_until_ready(600):
        raise SystemExit("the job server did not become ready")
    result["server_ready_s"] = round(time.perf_counter() - began, 1)
    server = psutil.Process(warm_jobs._server._proc.pid)
    memory = server.memory_full_info()
    result["server_idle_rss_mb"] = round(memory.rss / 2**20)
    result["server_idle_pss_mb"] = round(memory.pss / 2**20)
    warm = [one_run(jobs, options) for _ in range(args.repeats)]
    for name, runs in (("cold", cold), ("warm", warm)):
        result[f"{name}_first_step_s"] = round(statistics.median(r[0] for r in runs), 1)
        result[f"{name}_end_s"] = round(statistics.median(r[1] for r in runs), 1)
    result["saved_per_start_s"] = round(result["cold_first_step_s"] - result["warm_first_step_s"], 1)
    jobs.shutdown()
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
