"""Benchmark: the bundled smoke benchmark (assets/benchmarks/tuneforge_smoke) on the embedded model, before and
after the default demo run, through lm-evaluation-harness as the Evaluate tab runs it.

Prints JSON: the demo run's wall time, the benchmark job's wall time, per subject and metric the base
and tuned accuracy with lm-eval's standard errors, and `adapter_check`: the same questions' per-choice
log-likelihoods, base against the run (from the job's samples/), so that a run whose adapter was not
applied shows as a difference of 0 even when both models pick the same letters.
Usage: python bench/benchmark_demo.py [--max-steps N] [--num-fewshot K] [--limit N] [--workspace DIR]
(--workspace with a run named demo in it reuses that run.)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the full default run (3 epochs)")
    parser.add_argument("--num-fewshot", type=int, default=0)
    parser.add_argument("--limit", type=int, default=0, help="questions per subject (0: all 100)")
    parser.add_argument("--workspace", help="reuse this workspace's run 'demo' if it completed")
    args = parser.parse_args()
    from backend.evaluation.eval_jobs import EvalJobs
    from backend.runs.job_manager import JobManager

    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="tuneforge-bench-"))
    run_dir = workspace / "runs" / "demo"
    train_wall = None
    if not (run_dir / "adapter_config.json").exists():
        config = workspace / "run.yaml"
        config.write_text(f"output_dir: {run_dir}\nmax_steps: {args.max_steps}\n")
        began = time.perf_counter()
        cmd = [sys.executable, "-m", "backend.train", "--config", str(config)]
        subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
        train_wall = round(time.perf_counter() - began, 1)
    evals = EvalJobs(JobManager(workspace))
    request = {
        "tasks": [str(ROOT / "assets" / "benchmarks" / "tuneforge_smoke")],
        "models": ["base", "demo"],
        "num_fewshot": args.num_fewshot,
        "limit": args.limit or None,
    }
    began = time.perf_counter()
    job = evals.benchmark_start(request)
    status = evals.wait(job, timeout=3600)
    rows = {}
    for row in status["results"]:
        entry = rows.setdefault(f"{row['task']} {row['metric']}", {"n": row["n"]})
        entry[row["model"]] = [round(row["value"], 4), round(row["stderr"], 4)]
    result = {
        "benchmark": "benchmark_demo",
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, {platform.python_version()}",
        "status": status["status"],
        "error": status["error"],
        "demo_run_wall_s": train_wall,
        "benchmark_wall_s": round(time.perf_counter() - began, 1),
        "num_fewshot": args.num_fewshot,
        "scores": rows,  # task metric -> {n, base: [value, stderr], demo: [value, stderr]}
        "adapter_check": adapter_check(evals.folder(job), "base", "demo"),
        "workspace": str(workspace),
    }
    print(json.dumps(result, indent=2))


def adapter_check(folder: Path, a: str, b: str) -> dict:
    """How far b's per-choice log-likelihoods are from a's on the same questions, and whose answers moved."""
    from collections import Counter

    from backend.evaluation.bench_run import read_samples

    first, second = read_samples(folder, a), read_samples(folder, b)
    shared = [key for key in first if key in second]
    diffs, changed, picks = [], 0, {a: Counter(), b: Counter()}
    for key in shared:
        x, y = first[key]["responses"], second[key]["responses"]
        diffs += [abs(p - q) for p, q in zip(x, y, strict=True)]
        pick_x, pick_y = max(range(len(x)), key=x.__getitem__), max(range(len(y)), key=y.__getitem__)
        changed += pick_x != pick_y
        picks[a]["ABCD"[pick_x] if pick_x < 4 else pick_x] += 1
        picks[b]["ABCD"[pick_y] if pick_y < 4 else pick_y] += 1
    return {
        "questions": len(shared),
        "mean_abs_loglik_diff": round(sum(diffs) / len(diffs), 4) if diffs else None,
        "max_abs_loglik_diff": round(max(diffs), 4) if diffs else None,
        "answers_changed": changed,
        "answers_picked": {name: dict(sorted(count.items())) for name, count in picks.items()},
    }


if __name__ == "__main__":
    main()
