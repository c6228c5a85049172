"""Benchmark: speed as the model grows, ours against a plain Trainer + peft script, at three real sizes.

The models are built from the real configs of SmolLM2-135M, Qwen2.5-0.5B and Qwen2.5-1.5B (written out
below), randomly initialised and seeded: speed does not depend on the weights' values, and nothing is
downloaded. Each sits beside SmolLM2's tokenizer in the model cache (built once). Every size trains
LoRA r16 (all linear layers), cutoff 256, batch 4, on bench/data/speed_train.json for --steps steps:
  ours       `python -m backend.train`, exactly as the UI runs it;
  reference  bench/reference_train.py (Trainer + peft, padding to the longest of each batch),
in each precision this machine computes natively: fp32 everywhere, bf16 too where the CPU has native bf16
(AVX512_BF16 or AMX) or on a GPU. Each size's entry is in the fastest of them (what precision auto picks
for LoRA); where bf16 ran, `bf16_speedup` is ours in bf16 over ours in fp32.

MFU is against the precision's own matmul peak, measured once and cached (backend.training.matmul_peak).
peak_rss_mb is our job's own (wait4). fit_estimate_mb is backend.fit's estimate for the same run, and
fit_error its error against that peak.

    python bench/scale.py --json [--sizes 135m,0.5b,1.5b] [--steps 16]

Prints one JSON object: {"sizes": [{"name", "params", "precision", "ours_tokens_per_s",
"reference_tokens_per_s", "bf16_speedup", "mfu", "peak_rss_mb", "fit_estimate_mb", ...}, ...]}.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
sys.path.insert(0, str(ROOT))

# The real configs' shapes (config.json of HuggingFaceTB/SmolLM2-135M-Instruct, Qwen/Qwen2.5-0.5B-Instruct,
# Qwen/Qwen2.5-1.5B-Instruct); what the speed depends on, nothing else.
SIZES = {
    "135m": ("SmolLM2-135M", "llama", {
        "hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30, "num_attention_heads": 9,
        "num_key_value_heads": 3, "vocab_size": 49152, "max_position_embeddings": 8192, "rms_norm_eps": 1e-5,
        "rope_theta": 100000.0, "tie_word_embeddings": True, "hidden_act": "silu",
    }),
    "0.5b": ("Qwen2.5-0.5B", "qwen2", {
        "hidden_size": 896, "intermediate_size": 4864, "num_hidden_layers": 24, "num_attention_heads": 14,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": True, "hidden_act": "silu",
    }),
    "1.5b": ("Qwen2.5-1.5B", "qwen2", {
        "hidden_size": 1536, "intermediate_size": 8960, "num_hidden_layers": 28, "num_attention_heads": 12,
        "num_key_value_heads": 2, "vocab_size": 151936, "max_position_embeddings": 32768, "rms_norm_eps": 1e-6,
        "rope_theta": 1000000.0, "tie_word_embeddings": True, "hidden_act": "silu",
    }),
}  # fmt: skip
RANK, CUTOFF, BATCH = 16, 256, 4


def model_folder(size: str) -> Path:
    """The random model of this size beside SmolLM2's tokenizer, built once into the model cache, by a process
    of its own: Linux keeps ru_maxrss across fork and exec, so every job started from a process that had
    held the model would report that process's peak as its own."""
    from backend.paths import model_cache_dir

    target = model_cache_dir() / f"bench-scale-{SIZES[size][0]}-random"
    if not (target / "config.json").exists():
        subprocess.run([sys.executable, __file__, "--build", size], cwd=ROOT, check=True, capture_output=True)
    return target


def build_model(size: str) -> Path:
    import torch
    from filelock import FileLock
    from transformers import AutoConfig, AutoModelForCausalLM

    from backend.models.sources import default_model_dir
    from backend.paths import model_cache_dir

    name, model_type, shape = SIZES[size]
    target = model_cache_dir() / f"bench-scale-{name}-random"
    target.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(target) + ".lock"):
        if (target / "config.json").exists():
            return target
        tokenizer_dir = default_model_dir(progress=lambda msg: None)
        ids = {k: getattr(AutoConfig.from_pretrained(tokenizer_dir), k) for k in ("bos_token_id", "eos_token_id")}
        config = AutoConfig.for_model(model_type, **shape, **ids)
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)  # half the disk; loads as asked
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        model.save_pretrained(staging)
        model.config.dtype = torch.float32  # dtype "auto" loads fp32, as a converted GGUF does
        model.config.save_pretrained(staging)
        for item in tokenizer_dir.iterdir():
            if item.name.startswith(("tokenizer", "special_tokens", "vocab", "merges", "chat_template")):
                shutil.copy(item, staging / item.name)
        os.rename(staging, target)
    return target


def run_ours(workdir: Path, model: Path, precision: str, steps: int) -> dict:
    from backend.events import read_events
    from bench.train_speed import run_job

    run_dir = workdir / f"ours-{model.name}-{precision}"
    config = workdir / f"{run_dir.name}.yaml"
    settings = {
        "model": model, "output_dir": run_dir, "dataset": DATA / "speed_train.json", "eval_dataset": "''",
        "val_size": 0, "cutoff_len": CUTOFF, "per_device_train_batch_size": BATCH, "learning_rate": "1.0e-4",
        "max_steps": steps, "lora_rank": RANK, "lora_alpha": 2 * RANK, "precision": precision, "save_steps": 0,
    }  # fmt: skip
    config.write_text("".join(f"{key}: {value}\n" for key, value in settings.items()))
    rss_mb = run_job(config)
    events = read_events(run_dir)
    end = events[-1]
    if end.get("status") != "completed":
        raise SystemExit(f"our run {run_dir.name} did not complete: {end}")
    log = [e for e in events if e["type"] == "log"][-1]
    return {
        "tokens_per_s": end["tokens_per_s"],
        "flops_per_token": log["flops_per_token"],
        "peak_rss_mb": round(rss_mb),
        "config": config,
    }


def run_reference(workdir: Path, model: Path, precision: str, steps: int) -> dict:
    command = [
        sys.executable, str(ROOT / "bench" / "reference_train.py"), "--model", str(model),
        "--train", str(DATA / "speed_train.json"), "--eval", str(DATA / "speed_eval.json"),
        "--out", str(workdir / f"reference-{model.name}-{precision}"), "--rank", str(RANK),
        "--max-steps", str(steps), "--no-eval", *(["--bf16"] if precision == "bf16" else []),
    ]  # fmt: skip
    out = subprocess.run(command, cwd=ROOT, check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def fit_estimate_mb(config_path: Path, hardware: dict) -> float:
    import yaml

    from backend.capability import plan_run
    from backend.config import TrainConfig
    from backend.fit import estimate
    from backend.models.info import inspect_model

    raw = yaml.safe_load(config_path.read_text())
    config = TrainConfig.from_dict({k: v for k, v in raw.items() if k != "output_dir"})
    return estimate(inspect_model(str(config.model)), config, plan_run(config, hardware)).total_mb


def measure(size: str, steps: int, hardware: dict, workdir: Path) -> dict:
    from backend.models.info import read_shape
    from backend.training.matmul_peak import cached_peak_gflops, utilisation

    model = model_folder(size)
    precisions = ["fp32"] + (["bf16"] if hardware["bf16"] else [])
    ours = {p: run_ours(workdir, model, p, steps) for p in precisions}
    best = precisions[-1]
    reference = run_reference(workdir, model, best, steps)
    device = "cuda" if hardware["cuda"] else "cpu"
    gflops = ours[best]["tokens_per_s"] * ours[best]["flops_per_token"] / 1e9
    estimate_mb = fit_estimate_mb(ours[best]["config"], hardware)
    entry = {
        "name": SIZES[size][0],
        "params": read_shape(model).parameters,  # every stored tensor's elements, a tied head once
        "precision": best,
        "ours_tokens_per_s": ours[best]["tokens_per_s"],
        "reference_tokens_per_s": reference["tokens_per_s"],
        "speedup": round(ours[best]["tokens_per_s"] / reference["tokens_per_s"], 2),
        "mfu": utilisation(gflops, cached_peak_gflops(device, best)),
        "peak_rss_mb": ours[best]["peak_rss_mb"],
        "fit_estimate_mb": round(estimate_mb),
        "fit_error": round(estimate_mb / ours[best]["peak_rss_mb"] - 1, 3),
        "steps": steps,
    }
    if "bf16" in ours:
        entry["bf16_speedup"] = round(ours["bf16"]["tokens_per_s"] / ours["fp32"]["tokens_per_s"], 2)
        entry["fp32_tokens_per_s"] = ours["fp32"]["tokens_per_s"]
    return entry


def main() -> None:
    parser = argparse.ArgumentParser(description="speed as the model grows: ours against Trainer + peft")
    parser.add_argument("--json", action="store_true", help="print only the JSON result")
    parser.add_argument("--sizes", default=",".join(SIZES), help=f"comma-separated, of {', '.join(SIZES)}")
    parser.add_argument("--steps", type=int, default=16, help="training steps per run")
    parser.add_argument("--build", choices=SIZES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.build:
        build_model(args.build)
        return
    sizes = [s.strip().lower() for s in args.sizes.split(",") if s.strip()]
    unknown = [s for s in sizes if s not in SIZES]
    if unknown:
        parser.error(f"--sizes: unknown {', '.join(unknown)}; use {', '.join(SIZES)}")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.capability import probe
    from bench.train_speed import cpu_name

    hardware = probe()
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-scale-"))
    began = time.time()
    result = {"sizes": []}
    for size in sizes:
        result["sizes"].append(measure(size, args.steps, hardware, workdir))
        if not args.json:
            print(json.dumps(result["sizes"][-1]), flush=True)
    result["machine"] = f"{platform.machine()}, {os.cpu_count()} logical cores, {cpu_name()}"
    result["cpu_bf16"] = hardware["cpu_bf16"] or "none"
    result["seconds"] = round(time.time() - began)
    shutil.rmtree(workdir, ignore_errors=True)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
