"""Benchmark: CPU levers tried on our training step, each against the job as it runs today.

Each lever runs the same short job (the embedded SmolLM2-135M, LoRA r=8, the speed benchmark's
data, cutoff 256, batch 4, STEPS steps, fp32) as `python -m backend.train` does, with one change
patched in by this script's child process, never by a switch in the product:
  - compile: `torch_compile=True` in the TrainingArguments (inductor compiles the model's forward
    and backward; the first steps pay for compiling);
  - chunked_loss: the head and cross-entropy over the trained tokens in chunks of CHUNK rows, each
    chunk's logits recomputed in the backward instead of kept (what a fused linear cross-entropy saves).
Trials are interleaved (eager, lever, eager, lever...) so a busy machine slows both alike.

Usage: python bench/cpu_levers.py [--trials N] [--levers compile,chunked_loss]   (last line: JSON)
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

from bench.trials import machine, prepare  # noqa: E402

STEPS = 16
CHUNK = 256


def patch_compile() -> None:
    from backend.training.recipe import Recipe

    options = Recipe._training_options

    def compiled(self):
        return {**options(self), "torch_compile": True}

    Recipe._training_options = compiled


def patch_chunked_loss() -> None:
    """Replace the causal LM's loss over kept logits by a checkpointed, chunked head + cross-entropy."""
    import torch
    import torch.nn.functional as F  # noqa: N812 - torch's own alias
    from torch.utils.checkpoint import checkpoint
    from transformers import LlamaForCausalLM
    from transformers.modeling_outputs import CausalLMOutputWithPast

    def chunk_loss(hidden, weight, targets):
        logits = F.linear(hidden, weight).float()
        return F.cross_entropy(logits, targets, ignore_index=-100, reduction="sum")

    def forward(self, input_ids=None, logits_to_keep=0, shift_labels=None, labels=None, **kwargs):
        hidden = self.model(input_ids=input_ids, **kwargs).last_hidden_state
        if shift_labels is None or not isinstance(logits_to_keep, torch.Tensor):
            raise SystemExit("chunked_loss: the batch has no trained-token mask; this lever needs padding-free SFT")
        kept = hidden[logits_to_keep] if logits_to_keep.dtype == torch.bool else hidden[:, logits_to_keep]
        kept = kept.reshape(-1, kept.shape[-1])
        targets = shift_labels.reshape(-1)
        weight = self.lm_head.weight
        total = sum(
            checkpoint(chunk_loss, kept[a : a + CHUNK], weight, targets[a : a + CHUNK], use_reentrant=False)
            for a in range(0, kept.shape[0], CHUNK)
        )
        loss = total / (targets != -100).sum().clamp(min=1)
        return CausalLMOutputWithPast(loss=loss, logits=None)

    LlamaForCausalLM.forward = forward


LEVERS = {"compile": patch_compile, "chunked_loss": patch_chunked_loss}


def child(lever: str, config: str) -> int:
    if lever != "eager":
        LEVERS[lever]()
    from backend.train import main

    return main(["--config", config])


def run(workdir: Path, name: str, lever: str) -> dict:
    from backend.events import read_events

    run_dir = workdir / name
    config = workdir / f"{name}.yaml"
    settings = {
        "output_dir": run_dir,
        "dataset": DATA / "speed_train.json",
        "val_size": 0,
        "cutoff_len": 256,
        "per_device_train_batch_size": 4,
        "learning_rate": "1.0e-4",
        "max_steps": STEPS,
        "save_steps": 0,
        "precision": "fp32",
    }
    config.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    began = time.time()
    job = subprocess.Popen(
        [sys.executable, __file__, "--child", lever, str(config)], cwd=ROOT, stdout=subprocess.DEVNULL
    )
    _, status, usage = os.wait4(job.pid, 0)
    events = read_events(run_dir)
    end = events[-1] if events else {}
    if os.waitstatus_to_exitcode(status) or end.get("status") != "completed":
        raise SystemExit(f"{name}: the job did not complete ({end}); see {run_dir / 'train.log'}")
    logs = [e for e in events if e["type"] == "log" and "loss" in e]
    first = logs[0]["time"] - began
    # Steady state: from the 5th logged step to the last, past compiling and the first allocations.
    steady = (logs[-1]["time"] - logs[4]["time"]) / (len(logs) - 5)
    return {
        "wall_s": round(time.time() - began, 1),
        "first_step_s": round(first, 1),
        "steady_step_s": round(steady, 3),
        "tokens_per_s": end["tokens_per_s"],
        "final_loss": round(logs[-1]["loss"], 4),
        "peak_rss_mb": round(usage.ru_maxrss / 1024),
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        raise SystemExit(child(sys.argv[2], sys.argv[3]))
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=2)
    parser.add_argument("--levers", default=",".join(LEVERS))
    args = parser.parse_args()
    workdir = prepare("tuneforge-levers-")
    levers = [lever for lever in args.levers.split(",") if lever]
    trials: dict[str, list] = {"eager": [], **{lever: [] for lever in levers}}
    for trial in range(args.trials):
        for lever in trials:
            trials[lever].append(run(workdir, f"{lever}-{trial}", lever))
            print(lever, trials[lever][-1], file=sys.stderr, flush=True)
    best = {lever: min(runs, key=lambda r: r["steady_step_s"]) for lever, runs in trials.items()}
    result = {
        "steps": STEPS,
        "machine": machine(),
        "trials": trials,
        "steady_speedup": {
            lever: round(best["eager"]["steady_step_s"] / best[lever]["steady_step_s"], 3) for lever in levers
        },
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
