"""Benchmark: DPO on the bundled preference pairs (chosen answers are one sentence), LoRA on the default model.

Prints JSON: wall time, tokens/s, the reward margin over the first and last five steps, and the held-out
win rate (chosen answer preferred by mean log-probability per token) of the base model and the tuned run.
Usage: python bench/preference_demo.py [--max-steps N] [--learning-rate LR] [--task dpo|orpo|kto]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

HELD_OUT = 16


def mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 4) if values else None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=24)
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the task's default")
    parser.add_argument("--task", default="dpo", choices=("dpo", "orpo", "kto"))
    args = parser.parse_args()
    from backend.evaluation.evaluate import Evaluator
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine

    jobs = JobManager(Path(tempfile.mkdtemp(prefix="tuneforge-bench-")))
    options = {
        "task": args.task,
        "dataset": "demo_preference",
        "val_size": HELD_OUT,
        "max_steps": args.max_steps,
        "cutoff_len": 256,
        "save_steps": 0,
        "report_to": "none",
    }
    if args.learning_rate:
        options["learning_rate"] = args.learning_rate
    from bench.finished_run import run_to_end

    run_id, wall = run_to_end(jobs, options)
    events = jobs.events(run_id)
    margins = [e["rewards/margins"] for e in events if e["type"] == "log" and e.get("rewards/margins") is not None]
    end = next(e for e in reversed(events) if e["type"] == "end")
    comparison = Evaluator(jobs, ChatEngine(jobs)).compare_with_base(run_id, max_rows=HELD_OUT, max_new_tokens=8)
    table = {row["metric"]: row for row in comparison["comparison"]}
    jobs.shutdown()
    print(
        json.dumps(
            {
                "machine": f"{platform.machine()}, {platform.processor() or 'cpu'}",
                "task": args.task,
                "options": options,
                "wall_s": round(wall, 1),
                "tokens_per_s": end.get("tokens_per_s"),
                "margin_first5": mean(margins[:5]),
                "margin_last5": mean(margins[-5:]),
                "eval_rewards_accuracy": end.get("eval_rewards/accuracies"),
                "held_out_pairs": HELD_OUT,
                "win_rate_base": table["win_rate"]["base"],
                "win_rate_tuned": table["win_rate"]["tuned"],
                "logp_margin_base": table["logp_margin"]["base"],
                "logp_margin_tuned": table["logp_margin"]["tuned"],
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
