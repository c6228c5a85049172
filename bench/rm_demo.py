"""Benchmark: a reward model on LLaMA-Factory's dpo_en_demo.json, then GRPO with it as the reward (rm:<run>).

On the embedded SmolLM2-135M-Instruct (the default model), through the app's own JobManager and Evaluator:
  1. task rm on the demo's pairs that fit cutoff_len (both answers after their prompt), some held out;
     Evaluate's pairwise accuracy and margin on the held-out pairs, base (the untrained head, same seed)
     against tuned, with a one-sided binomial p-value of the tuned accuracy against chance (0.5);
  2. task grpo with rewards: rm:<that run>, on single-turn prompts of the demo that the reward model
     never saw; the mean reward/rm of greedy answers on held-out prompts, base against tuned.
On a shared machine set OMP_NUM_THREADS=1: a job whose threads wait at OpenMP barriers for cores
another process holds crawls. Prints JSON.
Usage: python bench/rm_demo.py [--rm-steps N] [--grpo-steps N] [--held-out-pairs N] [--workspace DIR] ...
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
DEMO = ROOT.parent / "shared" / "data" / "llamafactory" / "dpo_en_demo.json"
SHARED_DEMO = Path("/work/shared/data/llamafactory/dpo_en_demo.json")


def binomial_p(successes: int, trials: int) -> float:
    """P(X >= successes) for X ~ Binomial(trials, 1/2): how likely chance alone ranks this many pairs right."""
    return sum(math.comb(trials, k) for k in range(successes, trials + 1)) / 2**trials


def turns(row: dict) -> list[dict]:
    roles = {"human": "user", "gpt": "assistant", "system": "system"}
    return [{"role": roles[m["from"]], "content": m["value"]} for m in row["conversations"]]


def split_demo(path: Path, workspace: Path, cutoff_len: int, prompt_len: int) -> tuple[Path, Path, dict]:
    """The pairs that fit cutoff_len (for rm), and the single-turn prompts of the other rows (for grpo)."""
    from backend.models.sources import default_model_dir, load_tokenizer

    tokenizer = load_tokenizer(str(default_model_dir(progress=lambda msg: None)))
    rows = json.loads(path.read_text(encoding="utf-8"))
    length = lambda conversation: len(  # noqa: E731
        tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
    )
    pairs, prompts = [], []
    for row in rows:
        prompt = turns(row)
        answers = [[*prompt, {"role": "assistant", "content": row[k]["value"]}] for k in ("chosen", "rejected")]
        if max(map(length, answers)) <= cutoff_len:
            pairs.append(row)
        elif len(prompt) == 1 and length(prompt) <= prompt_len:
            prompts.append({"instruction": prompt[0]["content"]})
    data = workspace / "data"
    data.mkdir(parents=True, exist_ok=True)
    (data / "pairs.json").write_text(json.dumps(pairs), encoding="utf-8")
    (data / "prompts.json").write_text(json.dumps(prompts), encoding="utf-8")
    return data / "pairs.json", data / "prompts.json", {"rows": len(rows), "pairs": len(pairs), "prompts": len(prompts)}


def rounded(run: tuple[str, float]) -> tuple[str, float]:
    return run[0], round(run[1], 1)


def main() -> None:
    from bench.finished_run import run_to_end

    parser = argparse.ArgumentParser()
    parser.add_argument("--rm-steps", type=int, default=32)
    parser.add_argument("--grpo-steps", type=int, default=16)
    parser.add_argument("--held-out-pairs", type=int, default=30)
    parser.add_argument("--held-out-prompts", type=int, default=16)
    parser.add_argument("--cutoff-len", type=int, default=512)
    parser.add_argument("--max-completion-length", type=int, default=32, help="grpo's")
    parser.add_argument("--method", default="freeze", help="rm: freeze (last layers + head), lora or full")
    parser.add_argument("--learning-rate", type=float, default=3e-4, help="rm's")
    parser.add_argument("--workspace", default="")
    parser.add_argument("--rm-run", default="", help="an rm run already in the workspace: evaluated, not retrained")
    args = parser.parse_args()
    from backend.evaluation.evaluate import Evaluator
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine

    demo = DEMO if DEMO.exists() else SHARED_DEMO
    workspace = Path(args.workspace or tempfile.mkdtemp(prefix="tuneforge-rm-demo-"))
    pairs, prompts, counts = split_demo(demo, workspace, args.cutoff_len, prompt_len=160)
    jobs = JobManager(workspace)
    evaluator = Evaluator(jobs, ChatEngine(jobs))
    common = {"save_steps": 0, "report_to": "none", "logging_steps": 1}

    rm_options = {
        **common, "task": "rm", "dataset": str(pairs), "method": args.method, "freeze_trainable_layers": 2,
        "max_steps": args.rm_steps, "per_device_train_batch_size": 4, "learning_rate": args.learning_rate,
        "cutoff_len": args.cutoff_len, "val_size": args.held_out_pairs, "eval_steps": 10**6,
    }  # fmt: skip
    rm_run, rm_wall = (args.rm_run, None) if args.rm_run else rounded(run_to_end(jobs, rm_options))
    rm_logs = [e for e in jobs.events(rm_run) if e["type"] == "log"]
    compared = evaluator.compare_reward_model(rm_run)
    pairwise = {row["metric"]: {"base": row["base"], "tuned": row["tuned"]} for row in compared["comparison"]}
    held = compared["rows_evaluated"]
    right = round(pairwise["accuracy"]["tuned"] * held)

    grpo_options = {
        **common, "task": "grpo", "dataset": str(prompts), "rewards": f"rm:{rm_run}", "max_steps": args.grpo_steps,
        "max_completion_length": args.max_completion_length,
        "val_size": args.held_out_prompts, "eval_steps": 10**6,
    }  # fmt: skip
    grpo_run, grpo_wall = rounded(run_to_end(jobs, grpo_options))
    grpo_logs = [e for e in jobs.events(grpo_run) if e["type"] == "log"]
    held_prompts = evaluator.compare_with_base(grpo_run, max_rows=args.held_out_prompts)
    rewards = {row["metric"]: {"base": row["base"], "tuned": row["tuned"]} for row in held_prompts["comparison"]}
    first, last = grpo_logs[:4], grpo_logs[-4:]
    mean = lambda rows, key: round(sum(e[key] for e in rows) / len(rows), 4)  # noqa: E731
    print(
        json.dumps(
            {
                "benchmark": "rm_demo",
                "machine": platform.processor() or platform.machine(),
                "data": counts,
                "rm": {
                    "method": args.method,
                    "steps": rm_logs[-1]["step"],
                    "wall_s": rm_wall,
                    "held_out_pairs": held,
                    "pairwise": pairwise,
                    "tuned_right": right,
                    "p_value_vs_chance": round(binomial_p(right, held), 4),
                },
                "grpo": {
                    "steps": grpo_logs[-1]["step"],
                    "wall_s": grpo_wall,
                    "s_per_step": round(grpo_logs[-1]["elapsed_s"] / grpo_logs[-1]["step"], 2),
                    "reward_rm_first_4_steps": mean(first, "reward/rm"),
                    "reward_rm_last_4_steps": mean(last, "reward/rm"),
                    "held_out_prompts": len(held_prompts["rows"]),
                    "held_out": rewards,
                    "examples": [
                        {
                            k: row[k][:200] if isinstance(row[k], str) else row[k]
                            for k in ("prompt", "base_prediction", "base_reward", "prediction", "reward")
                        }
                        for row in held_prompts["rows"][:3]
                    ],  # fmt: skip
                },
            },
            indent=2,
        )
    )
    jobs.shutdown()


if __name__ == "__main__":
    main()
