"""Benchmark: TRL's fused LM head scoring only the labelled positions on a CPU (backend.training.labelled_positions),
against TRL's own choice there, every position (prompt and padding too).

Two jobs, each started fresh as the studio starts them (`python -m backend.train`, torch on one thread as in
the test suite), on the embedded SmolLM2-135M with the test suite's demo settings:
  - dpo: 8 LoRA steps of 2 pairs of the bundled preference demo, 8 held-out pairs;
  - grpo: 8 LoRA steps of 8 completions (2 arithmetic prompts x 4) of at most 16 tokens, 8 held-out prompts.
The "every" trials put a sitecustomize first on the job's PYTHONPATH that turns the switch into nothing; the
"labelled" trials run the product as it is. Trials alternate, so a busy machine slows both alike. Each
reports the job's wall and CPU seconds (wait4), and its final metrics, which should be the same both ways.

Usage: python bench/labelled_positions.py [--trials N] [--tasks dpo,grpo]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trials import best, interleaved, job_trial, machine, prepare, without  # noqa: E402

MODES = ("labelled", "every")
TASKS = {
    "dpo": {"task": "dpo", "dataset": "demo_preference", "val_size": 8, "max_steps": 8,
            "per_device_train_batch_size": 2, "learning_rate": 5e-4, "cutoff_len": 192, "eval_steps": 100},
    "grpo": {"task": "grpo", "dataset": "demo_arithmetic", "val_size": 8, "max_steps": 8,
             "max_completion_length": 16},
}  # fmt: skip
EVERY_POSITION = without("backend.training.labelled_positions", "score_labelled_positions_only")
KEPT = ("train_loss", "eval_loss", "eval_rewards/margins", "eval_rewards/accuracies", "eval_reward", "reward")


def trial(task: str, mode: str, workdir: Path, number: int) -> dict:
    site = EVERY_POSITION if mode == "every" else ""
    return job_trial(workdir, f"{task}-{mode}-{number}", TASKS[task], site, KEPT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--tasks", default="dpo,grpo")
    args = parser.parse_args()
    workdir = prepare("tuneforge-positions-")
    tasks = [task for task in args.tasks.split(",") if task]
    results = interleaved(tasks, MODES, args.trials, lambda task, mode, number: trial(task, mode, workdir, number))
    least = best(results, "cpu_s")
    same = {
        task: all(r["metrics"] == modes["every"][0]["metrics"] for runs in modes.values() for r in runs)
        for task, modes in results.items()
    }
    print(
        json.dumps(
            {
                "machine": machine(),
                "trials": results,
                "best_cpu_s": least,
                "cpu_saved_share": {task: round(1 - b["labelled"] / b["every"], 3) for task, b in least.items()},
                "same_metrics": same,
            }
        )
    )


if __name__ == "__main__":
    main()
