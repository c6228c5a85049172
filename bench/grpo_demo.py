"""Benchmark: GRPO on the bundled arithmetic prompts with the task's default rewards, LoRA on the default model.

Prints JSON: wall time, seconds per step, the mean total reward and each component over the first and last
five steps, and on the held-out prompts the base model's and the tuned run's mean reward (greedy answers,
scored by the run's own rewards). Everything else is the grpo task's defaults (the Train tab's, after picking
grpo): 30 steps of 8 completions (2 prompts x 4), at most 32 tokens each, learning rate 1e-3, constant.
Usage: python bench/grpo_demo.py [--max-steps N] [--max-completion-length N] [--held-out N]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=None, help="default: the task's (30)")
    parser.add_argument("--max-completion-length", type=int, default=None, help="default: the option's (32)")
    parser.add_argument("--held-out", type=int, default=24)
    args = parser.parse_args()
    from backend.evaluation.evaluate import Evaluator
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine

    jobs = JobManager(Path(tempfile.mkdtemp(prefix="tuneforge-bench-")))
    options = {"task": "grpo", "val_size": args.held_out, "save_steps": 0, "report_to": "none", "eval_steps": 10**6}
    if args.max_steps:
        options["max_steps"] = args.max_steps
    if args.max_completion_length:
        options["max_completion_length"] = args.max_completion_length
    from bench.finished_run import run_to_end

    run_id, wall = run_to_end(jobs, options)
    logs = [e for e in jobs.events(run_id) if e["type"] == "log"]
    keys = ["reward", *sorted(k for k in logs[0] if k.startswith("reward/")), "completion_length"]
    began_eval = time.perf_counter()
    evaluator = Evaluator(jobs, ChatEngine(jobs))
    compared = evaluator.compare_with_base(run_id, max_rows=args.held_out)
    held_out = {row["metric"]: {"base": row["base"], "tuned": row["tuned"]} for row in compared["comparison"]}
    print(
        json.dumps(
            {
                "benchmark": "grpo_demo",
                "machine": platform.processor() or platform.machine(),
                "steps": logs[-1]["step"],
                "wall_s": round(wall, 1),
                "s_per_step": round(logs[-1]["elapsed_s"] / logs[-1]["step"], 2),
                "first_5_steps": {k: mean([e[k] for e in logs[:5] if e.get(k) is not None]) for k in keys},
                "last_5_steps": {k: mean([e[k] for e in logs[-5:] if e.get(k) is not None]) for k in keys},
                "held_out_prompts": len(compared["rows"]),
                "held_out": held_out,
                "evaluate_s": round(time.perf_counter() - began_eval, 1),
                "examples": [
                    {k: row[k] for k in ("prompt", "reference", "base_prediction", "prediction")}
                    for row in compared["rows"][:4]
                ],
            },
            indent=2,
        )
    )
    jobs.shutdown()


if __name__ == "__main__":
    main()
