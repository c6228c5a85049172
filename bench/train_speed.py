"""Benchmark: TuneForge's training pipeline against a plain transformers + peft script, same work.

Both train the embedded SmolLM2-135M-Instruct with LoRA r=8 on all linear layers, cutoff 256,
batch 4, learning rate 1e-4, one epoch over bench/data/speed_train.json (256 alpaca examples of
varied length), and score bench/data/speed_eval.json at the end:
  1. ours: `python -m backend.train --config run.yaml`, exactly as the UI runs it;
  2. the reference: bench/reference_train.py (Trainer + peft, padding to the longest in a batch).
It also measures a large fp32 matmul, the machine's practical peak, in the same run. Ours trains
in fp32, as the reference does, whatever precision auto would pick.

Where the machine has native bf16 (a CPU with AVX512_BF16 or AMX, or a GPU), ours trains the same
work again in bf16 (bf16_speedup, ours_bf16_eval_loss, MFU against a bf16 matmul's peak). And on
every machine, two short runs (MEMORY_STEPS steps, fp32) load the same model for lora and for
qlora (4-bit NF4), for the weights' memory footprint and each job's own peak RSS.

Usage: python bench/train_speed.py [--json]   (the last line printed is the JSON result)
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
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT))


MEMORY_STEPS = 8  # the lora and qlora runs compared for memory: long enough to reach the optimizer's state


def run_ours(workdir: Path, name: str = "ours", **options) -> dict:
    """One job as the UI runs it, on the benchmark's data; options override the settings (precision, method...)."""
    from backend.events import read_events

    run_dir = workdir / name
    config = workdir / f"{name}.yaml"
    settings = {
        "output_dir": run_dir,
        "dataset": DATA / "speed_train.json",
        "eval_dataset": DATA / "speed_eval.json",
        "val_size": 0,
        "cutoff_len": 256,
        "per_device_train_batch_size": 4,
        "learning_rate": "1.0e-4",
        "num_train_epochs": 1,
        "eval_steps": 100000,  # score once, at the end, as the reference does
        "precision": "fp32",
        **options,
    }
    config.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    began = time.time()
    rss_mb = run_job(config)
    events = read_events(run_dir)
    end = events[-1]
    if end.get("status") != "completed":
        raise SystemExit(f"our {name} run did not complete: {end}")
    first_log = next(e for e in events if e["type"] == "log")
    weights_mb = next(e["weights_mb"] for e in events if "weights_mb" in e)
    return {
        "peak_rss_mb": round(rss_mb),
        "weights_mb": round(weights_mb),
        "tokens_per_s": end["tokens_per_s"],
        "tokens_seen": end["tokens_seen"],
        "train_runtime_s": end["train_runtime_s"],
        "eval_loss": round(end["eval_loss"], 4) if end.get("eval_loss") is not None else None,
        "first_step_s": round(first_log["time"] - began, 1),
        "flops_per_token": first_log["flops_per_token"],
        "steps": end["global_step"],
    }


def run_job(config: Path) -> float:
    """`python -m backend.train` on config; returns the job's own peak RSS in MB.

    Waited for with wait4, so the figure is this job's alone (RUSAGE_CHILDREN is the largest of all
    children so far).
    """
    job = subprocess.Popen(
        [sys.executable, "-m", "backend.train", "--config", str(config)],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _, status, usage = os.wait4(job.pid, 0)
    job.returncode = os.waitstatus_to_exitcode(status)
    if job.returncode:
        raise SystemExit(f"{config.name}: the job exited with {job.returncode}; see its train.log")
    return usage.ru_maxrss / 1024


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
    from backend.capability import probe
    from backend.models.sources import default_model_dir
    from backend.training.flops import matmul_peak_gflops

    model_dir = default_model_dir(progress=lambda msg: None)
    hardware = probe()
    peak = round(matmul_peak_gflops(), 1)
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-speed-"))
    ours = run_ours(workdir)
    reference = run_reference(workdir, model_dir)
    # What the job counted a token's step to cost (backend.training.flops: matmuls only, head for trained tokens).
    achieved = ours["tokens_per_s"] * ours["flops_per_token"] / 1e9
    result = {
        "ours_tokens_per_s": ours["tokens_per_s"],
        "reference_tokens_per_s": reference["tokens_per_s"],
        "speedup": round(ours["tokens_per_s"] / reference["tokens_per_s"], 2),
        "ours_eval_loss": ours["eval_loss"],
        "reference_eval_loss": reference["eval_loss"],
        "eval_loss_change": round(ours["eval_loss"] / reference["eval_loss"] - 1, 4),
        "first_step_s": ours["first_step_s"],
        "peak_rss_mb": ours["peak_rss_mb"],
        "matmul_peak_gflops": peak,
        "achieved_gflops": round(achieved, 1),
        "achieved_share_of_peak": round(achieved / peak, 2),
        "ours_train_runtime_s": ours["train_runtime_s"],
        "reference_train_runtime_s": reference["train_runtime_s"],
        "tokens_seen": {"ours": ours["tokens_seen"], "reference": reference["tokens_seen"]},
        "steps": {"ours": ours["steps"], "reference": reference["steps"]},
        "machine": f"{platform.machine()}, {os.cpu_count()} logical cores, {cpu_name()}",
        "cpu_bf16": hardware["cpu_bf16"] or "none",
    }
    if hardware["bf16"]:
        result.update(bf16_side(workdir, ours))
    result.update(memory_side(workdir))
    if not args.json:
        print(f"ours {result['ours_tokens_per_s']} tok/s, reference {result['reference_tokens_per_s']} tok/s")
    print(json.dumps(result))


def bf16_side(workdir: Path, fp32: dict) -> dict:
    """The same work in bf16: speed over ours in fp32, its eval loss, and MFU against a bf16 matmul's peak."""
    from backend.training.flops import matmul_peak_gflops

    peak = round(matmul_peak_gflops(dtype="bf16"), 1)
    bf16 = run_ours(workdir, "ours_bf16", precision="bf16")
    achieved = bf16["tokens_per_s"] * bf16["flops_per_token"] / 1e9
    return {
        "ours_bf16_tokens_per_s": bf16["tokens_per_s"],
        "bf16_speedup": round(bf16["tokens_per_s"] / fp32["tokens_per_s"], 2),
        "ours_bf16_eval_loss": bf16["eval_loss"],
        "bf16_eval_loss_change": round(bf16["eval_loss"] / fp32["eval_loss"] - 1, 4),
        "bf16_matmul_peak_gflops": peak,
        "bf16_achieved_gflops": round(achieved, 1),
        "bf16_achieved_share_of_peak": round(achieved / peak, 2),
        "ours_bf16_train_runtime_s": bf16["train_runtime_s"],
        "bf16_peak_rss_mb": bf16["peak_rss_mb"],
    }


def memory_side(workdir: Path) -> dict:
    """lora and qlora (4-bit) on the same model for MEMORY_STEPS steps in fp32: weights in memory and peak RSS."""
    short = {"max_steps": MEMORY_STEPS, "eval_dataset": "''"}
    runs = {method: run_ours(workdir, method, method=method, **short) for method in ("lora", "qlora")}
    result = {}
    for method, run in runs.items():
        result.update(
            {
                f"{method}_weights_mb": run["weights_mb"],
                f"{method}_peak_rss_mb": run["peak_rss_mb"],
                f"{method}_tokens_per_s": run["tokens_per_s"],
            }
        )
    result["qlora_weights_share"] = round(runs["qlora"]["weights_mb"] / runs["lora"]["weights_mb"], 2)
    return result


def cpu_name() -> str:
    try:
        lines = Path("/proc/cpuinfo").read_text().splitlines()
    except OSError:
        return platform.processor() or "cpu"
    return next((line.split(":", 1)[1].strip() for line in lines if line.startswith("model name")), "cpu")


if __name__ == "__main__":
    main()
