"""Benchmark: TuneForge's training pipeline against a plain transformers + peft script, same work.

Both train the embedded SmolLM2-135M-Instruct with LoRA r=8 on all linear layers, cutoff 256,
batch 4, learning rate 1e-4, one epoch over bench/data/speed_train.json (256 alpaca examples of
varied length), and score bench/data/speed_eval.json at the end:
  1. ours: `python -m backend.train --config run.yaml`, exactly as the UI runs it;
  2. the reference: bench/reference_train.py (Trainer + peft, padding to the longest in a batch).
It also measures a large fp32 matmul, the machine's practical peak, in the same run.

Usage: python bench/train_speed.py [--json]   (the last line printed is the JSON result)
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT))


def run_ours(workdir: Path) -> dict:
    from backend.events import read_events

    run_dir = workdir / "ours"
    config = workdir / "run.yaml"
    config.write_text(
        "\n".join(
            [
                f"output_dir: {run_dir}",
                f"dataset: {DATA / 'speed_train.json'}",
                f"eval_dataset: {DATA / 'speed_eval.json'}",
                "val_size: 0",
                "cutoff_len: 256",
                "per_device_train_batch_size: 4",
                "learning_rate: 1.0e-4",
                "num_train_epochs: 1",
                "eval_steps: 100000",  # score once, at the end, as the reference does
            ]
        )
        + "\n"
    )
    began = time.time()
    subprocess.run(
        [sys.executable, "-m", "backend.train", "--config", str(config)],
        cwd=ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    events = read_events(run_dir)
    end = events[-1]
    if end.get("status") != "completed":
        raise SystemExit(f"our run did not complete: {end}")
    first_log = next(e for e in events if e["type"] == "log")
    return {
        "tokens_per_s": end["tokens_per_s"],
        "tokens_seen": end["tokens_seen"],
        "train_runtime_s": end["train_runtime_s"],
        "eval_loss": round(end["eval_loss"], 4),
        "first_step_s": round(first_log["time"] - began, 1),
        "steps": end["global_step"],
    }


def run_reference(workdir: Path, model_dir: Path) -> dict:
    out = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "reference_train.py"),
            "--model",
            str(model_dir),
            "--train",
            str(DATA / "speed_train.json"),
            "--eval",
            str(DATA / "speed_eval.json"),
            "--out",
            str(workdir / "reference"),
        ],
        cwd=ROOT,
        check=True,
        capture_output=True,
        text=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.models import default_model_dir
    from backend.training.flops import matmul_peak_gflops, parameter_count, training_flops_per_token

    model_dir = default_model_dir(progress=lambda msg: None)
    peak = round(matmul_peak_gflops(), 1)
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-speed-"))
    ours = run_ours(workdir)
    ours_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    reference = run_reference(workdir, model_dir)
    achieved = ours["tokens_per_s"] * training_flops_per_token(parameter_count(model_dir), "lora") / 1e9
    result = {
        "ours_tokens_per_s": ours["tokens_per_s"],
        "reference_tokens_per_s": reference["tokens_per_s"],
        "speedup": round(ours["tokens_per_s"] / reference["tokens_per_s"], 2),
        "ours_eval_loss": ours["eval_loss"],
        "reference_eval_loss": reference["eval_loss"],
        "eval_loss_change": round(ours["eval_loss"] / reference["eval_loss"] - 1, 4),
        "first_step_s": ours["first_step_s"],
        "peak_rss_mb": round(ours_rss_mb),
        "matmul_peak_gflops": peak,
        "achieved_gflops": round(achieved, 1),
        "achieved_share_of_peak": round(achieved / peak, 2),
        "ours_train_runtime_s": ours["train_runtime_s"],
        "reference_train_runtime_s": reference["train_runtime_s"],
        "tokens_seen": {"ours": ours["tokens_seen"], "reference": reference["tokens_seen"]},
        "steps": {"ours": ours["steps"], "reference": reference["steps"]},
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, {platform.processor() or 'cpu'}",
    }
    if not args.json:
        print(f"ours {result['ours_tokens_per_s']} tok/s, reference {result['reference_tokens_per_s']} tok/s")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
