"""The GPU paths end to end in one command: bf16 LoRA, QLoRA 4-bit and full fine-tuning, as JSON.

Usage: python bench/gpu_check.py [--steps 40]

Each path is one job exactly as the UI starts it (`python -m backend.train --config run.yaml`) on
the embedded SmolLM2-135M and the bundled demo data, in bf16 where the GPU has it. It prints one
JSON object: per path, whether it completed, tokens/s, MFU, peak GPU memory and the attention the
packed rows ran with (a variable-length kernel, or the per-example loop). A few minutes on one
current GPU. On a machine without CUDA it prints why it skipped and exits 0, so it can run anywhere.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PATHS = {
    "bf16_lora": {"method": "lora"},
    "qlora_4bit": {"method": "qlora", "quantization_bit": 4},
    "full": {"method": "full", "learning_rate": 1e-5},
}


LOADING = "loading model ("  # the job's status line, with the precision it loads in


def statuses(events: list[dict]) -> list[str]:
    return [e["message"] for e in events if e["type"] == "status"]


def run(name: str, options: dict, workdir: Path, steps: int) -> dict:
    import yaml

    from backend.events import read_events

    run_dir = workdir / name
    config = {"dataset": "demo_identity", "output_dir": str(run_dir), "max_steps": steps, "val_size": 0}
    config.update(per_device_train_batch_size=8, save_steps=0, report_to="none", logging_steps=5, **options)
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    began = time.time()
    result = subprocess.run(
        [sys.executable, "-m", "backend.train", "--config", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    events = read_events(run_dir) if run_dir.exists() else []
    end = next((e for e in reversed(events) if e["type"] == "end"), {})
    logs = [e for e in events if e["type"] == "log"]
    training = next((e for e in events if e["type"] == "status" and e.get("message") == "training"), {})
    last = logs[-1] if logs else {}
    said = (result.stderr.strip().splitlines() or [None])[-1] if result.returncode else None
    return {
        "status": end.get("status", f"exit {result.returncode}"),
        "error": end.get("error") or said,
        "precision": next((m[len(LOADING) : -1] for m in statuses(events) if m.startswith(LOADING)), None),
        "tokens_per_s": last.get("tokens_per_s"),
        "mfu": last.get("mfu"),
        "peak_memory_mb": last.get("peak_memory_mb"),
        "attention": training.get("attention"),
        "wall_s": round(time.time() - began, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per path (default 40)")
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print(json.dumps({"skipped": "no CUDA GPU here (torch.cuda.is_available() is False)"}))
        return 0
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-gpu-check-"))
    result = {
        "gpu": torch.cuda.get_device_name(0),
        "gpus": torch.cuda.device_count(),
        "torch": torch.__version__,
        "paths": {name: run(name, options, workdir, args.steps) for name, options in PATHS.items()},
    }
    print(json.dumps(result, indent=2))
    return 0 if all(p["status"] == "completed" for p in result["paths"].values()) else 1


if __name__ == "__main__":
    sys.exit(main())
