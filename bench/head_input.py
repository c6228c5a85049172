"""Benchmark: the LM head fed a packed (contiguous) input at generation's prefill (backend.models.head_input),
against the strided view transformers hands it, `hidden_states[:, -1:, :]`.

Two parts, torch on one thread as in the test suite:
  - head: the embedded SmolLM2-135M's own head (49,152 x 576) on one prefill's last positions, for 1 and for 8
    prompts of 45 tokens, in bf16 and fp32: the median of 5 calls, strided view against packed copy;
  - grpo: the GRPO demo job of the test suite (8 LoRA steps of 8 completions of at most 16 tokens, 8 held-out
    prompts), started fresh as the studio starts it. The "strided" trials put a sitecustomize first on the job's
    PYTHONPATH that leaves the head alone; the "packed" trials run the product as it is. Trials alternate, so a
    busy machine slows both alike. Each reports the job's wall and CPU seconds (wait4) and its final metrics,
    which should be the same both ways.

Usage: python bench/head_input.py [--trials N] [--parts head,grpo]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trials import best, interleaved, job_trial, machine, prepare, without  # noqa: E402

MODES = ("packed", "strided")
GRPO = {"task": "grpo", "dataset": "demo_arithmetic", "val_size": 8, "max_steps": 8, "max_completion_length": 16}
STRIDED = without("backend.models.head_input", "read_contiguous_head_input", stub="lambda model: model")
KEPT = ("train_loss", "eval_reward", "reward", "completion_length")


def head_times() -> dict[str, float]:
    """Milliseconds per call of the real head, strided view against packed copy, by dtype and prompt count."""
    import torch
    from safetensors import safe_open

    from backend.models.sources import default_model_dir

    torch.set_num_threads(1)
    folder = default_model_dir(progress=lambda msg: None)
    with safe_open(str(next(folder.glob("*.safetensors"))), "pt") as weights:
        head = weights.get_tensor("model.embed_tokens.weight")  # SmolLM2 ties its head to the embeddings
    times = {}
    for dtype in (torch.bfloat16, torch.float32):
        weight = head.to(dtype)
        for prompts in (1, 8):
            hidden = torch.randn(prompts, 45, weight.shape[1], dtype=dtype)
            view = hidden[:, -1:, :]
            for mode, rows in (("strided", view), ("packed", view.clone(memory_format=torch.contiguous_format))):
                torch.nn.functional.linear(rows, weight)  # the first call of a shape sets up its kernel
                calls = []
                for _ in range(5):
                    began = time.perf_counter()
                    torch.nn.functional.linear(rows, weight)
                    calls.append(time.perf_counter() - began)
                times[f"{str(dtype).removeprefix('torch.')}_{prompts}_prompts_{mode}_ms"] = round(
                    1000 * statistics.median(calls), 1
                )
    return times


def grpo_trial(mode: str, workdir: Path, number: int) -> dict:
    return job_trial(workdir, f"grpo-{mode}-{number}", GRPO, STRIDED if mode == "strided" else "", KEPT)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--parts", default="head,grpo")
    args = parser.parse_args()
    workdir = prepare("tuneforge-head-input-")
    parts = args.parts.split(",")
    report: dict = {"machine": machine()}
    if "head" in parts:
        report["head"] = head_times()
        print("head", report["head"], file=sys.stderr, flush=True)
    if "grpo" in parts:
        results = interleaved(["grpo"], MODES, args.trials, lambda kind, mode, n: grpo_trial(mode, workdir, n))
        least = best(results, "cpu_s")["grpo"]
        runs = results["grpo"]
        report["grpo"] = {
            "trials": runs,
            "best_cpu_s": least,
            "cpu_saved_share": round(1 - least["packed"] / least["strided"], 3),
            "same_metrics": all(r["metrics"] == runs["strided"][0]["metrics"] for rs in runs.values() for r in rs),
        }
    print(json.dumps(report))


if __name__ == "__main__":
    main()
