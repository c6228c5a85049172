"""Benchmark: a training job on glibc's malloc defaults against the same job told to keep its freed memory.

glibc gives each large block (above a threshold that starts at 128 KiB and rises to 32 MiB as such blocks
are freed) its own mapping, unmapped when freed, and returns the top of its heap once 128 KiB is free there.
A training step frees and allocates the same activations each time, so the kernel maps and zeroes them again,
page by page. The "kept" trials start the job with both thresholds at 2 GiB
(GLIBC_TUNABLES=glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647), a setting a
person can give any process; the product does not set it (docs/benchmarks.md says why).

Each trial runs `python -m backend.train` on the embedded SmolLM2-135M with precision auto, as the product
does, in a child process. Two jobs:
  - grpo: the GRPO browser demo's run (demo_arithmetic, the task's defaults, 8 steps, completions of at
    most 16 tokens, 8 held-out prompts);
  - sft: 16 steps of the speed benchmark's data, cutoff 256, batch 4, no validation.
Trials are interleaved (kept, glibc, kept, glibc...) so a busy machine slows both alike. Each reports the
child's wall, user and system seconds, its page faults (minor) and its peak memory, from wait4.

Usage: OMP_NUM_THREADS=1 python bench/freed_memory.py [--trials N] [--jobs grpo,sft]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT))

from bench.trials import best, interleaved, machine, prepare  # noqa: E402

JOBS = {
    "grpo": {"task": "grpo", "dataset": "demo_arithmetic", "max_steps": 8, "max_completion_length": 16, "val_size": 8},
    "sft": {
        "dataset": DATA / "speed_train.json",
        "val_size": 0,
        "cutoff_len": 256,
        "per_device_train_batch_size": 4,
        "max_steps": 16,
        "save_steps": 0,
    },
}
MODES = ("kept", "glibc")
KEPT = "glibc.malloc.mmap_threshold=2147483647:glibc.malloc.trim_threshold=2147483647"


def run(workdir: Path, job: str, mode: str, trial: int) -> dict:
    from backend.events import end_event, read_events

    run_dir = workdir / f"{job}-{mode}-{trial}"
    config = workdir / f"{run_dir.name}.yaml"
    config.write_text("".join(f"{key}: {value}\n" for key, value in {**JOBS[job], "output_dir": run_dir}.items()))
    began = time.time()
    env = {**os.environ, **({"GLIBC_TUNABLES": KEPT} if mode == "kept" else {})}
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.train", "--config", str(config)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(process.pid, 0)
    end = end_event(read_events(run_dir)) or {}
    if os.waitstatus_to_exitcode(status) or end.get("status") != "completed":
        raise SystemExit(f"{run_dir.name}: the job did not complete ({end}); see {run_dir / 'train.log'}")
    return {
        "wall_s": round(time.time() - began, 1),
        "user_s": round(usage.ru_utime, 1),
        "system_s": round(usage.ru_stime, 1),
        "page_faults": usage.ru_minflt,
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--jobs", default=",".join(JOBS))
    args = parser.parse_args()
    workdir = prepare("tuneforge-heap-")
    jobs = [job for job in args.jobs.split(",") if job]
    results = interleaved(jobs, MODES, args.trials, lambda job, mode, trial: run(workdir, job, mode, trial))
    least = best(results, "wall_s")
    print(
        json.dumps(
            {
                "machine": machine(),
                "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
                "trials": results,
                "best_wall_s": least,
                "speedup": {job: round(b["glibc"] / b["kept"], 3) for job, b in least.items()},
            }
        )
    )


if __name__ == "__main__":
    main()
