"""Check the Model tab's memory estimate (backend/fit.py) against the peak RSS of real training jobs.

Each case is a short job run as the UI runs it, `python -m backend.train --config run.yaml`, for
MAX_STEPS optimizer steps: AdamW's state is allocated at the end of the first, so only from the second
does a forward and backward pass run beside it (the steady state). The job is waited for with wait4, so
the peak is its own (ru_maxrss: its resident memory at its largest, model load and final save
included); its RSS is also sampled before and after the `training` event. The data are examples longer
than cutoff_len, so every batch holds batch × cutoff tokens, the estimate's worst case; nearly every
token is a trained answer token. A baseline process that only imports the job's modules and loads the
tokenizer shows how much of a peak is the runtime's fixed cost. The last CASES were not used to fit
backend/fit.py's constants (qwen1.5b_qlora builds bench/scale.py's 1.5B model into the model cache
first). Results: docs/benchmarks.md, "Will it fit?".

Usage: python bench/fit_check.py [--cases NAME,...]   (the last line printed is the JSON result)
       python bench/fit_check.py --reestimate RESULT.json   (the same measurements against today's estimate,
       after a change to backend/fit.py's constants; the measured peaks do not depend on them)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MAX_STEPS = 2
TINY = "tiny-llama-2-64-128-4"  # tests/conftest.py's tiny model, in the model cache once the tests have run
# name: (model, options)
CASES = {
    "tiny_lora": ("tiny", {"method": "lora"}),
    "smollm2_lora": ("default", {"method": "lora"}),
    "smollm2_qlora": ("default", {"method": "qlora"}),
    "smollm2_full": ("default", {"method": "full"}),
    "smollm2_freeze": ("default", {"method": "freeze"}),
    # Not used to fit backend/fit.py's constants: checks of the estimate on settings it was not fitted to.
    "smollm2_lora_c128": ("default", {"method": "lora", "cutoff_len": 128}),
    "smollm2_full_b2": ("default", {"method": "full", "per_device_train_batch_size": 2}),
    "smollm2_qlora_c512": ("default", {"method": "qlora", "cutoff_len": 512}),
    # Issue 33: QLoRA on a 1.5B model (bench/scale.py's random Qwen2.5-1.5B body with SmolLM2's tokenizer):
    # where the weights, not the runtime, are most of the peak. Short batches: memory, not speed, is the point.
    "qwen1.5b_qlora": ("scale:1.5b", {"method": "qlora", "per_device_train_batch_size": 2, "cutoff_len": 128}),
    "qwen0.5b_lora": ("scale:0.5b", {"method": "lora", "per_device_train_batch_size": 2, "cutoff_len": 128}),
}
BASE = {"per_device_train_batch_size": 4, "cutoff_len": 256}


def long_examples(path: Path, count: int = 64) -> Path:
    """Alpaca rows whose answers run past any cutoff used here (~900 words), so batches are full."""
    words = "model data train memory layer token weight answer river stone light number table window".split()
    rng = random.Random(0)
    rows = [
        {"instruction": f"Write about item {i}.", "input": "", "output": " ".join(rng.choices(words, k=900))}
        for i in range(count)
    ]
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


def run_case(workdir: Path, name: str, model: str, options: dict, data: Path) -> dict:
    from backend.events import read_events

    run_dir = workdir / name
    settings = {
        "model": model,
        "dataset": str(data),
        "output_dir": str(run_dir),
        "val_size": 0,
        "max_steps": MAX_STEPS,
        "save_steps": 0,
        "report_to": "none",
        **BASE,
        **options,
    }
    config = workdir / f"{name}.yaml"
    config.write_text(json.dumps(settings), encoding="utf-8")  # JSON is YAML
    began = time.time()
    phases: dict = {}
    command = [sys.executable, "-m", "backend.train", "--config", str(config)]
    peak_mb = peak_rss_mb(command, phases, run_dir / "events.jsonl")
    events = read_events(run_dir)
    if events[-1].get("status") != "completed":
        raise SystemExit(f"{name} did not complete: {events[-1]}; see {run_dir}/train.log")
    logs = [e for e in events if e["type"] == "log"]
    return {
        "settings": settings,  # JSON-safe: the estimate is computed again from these (--reestimate)
        "peak_rss_mb": round(peak_mb),
        "training_peak_mb": logs[-1]["peak_memory_mb"],  # ru_maxrss at the last step, before the final save
        **phases,
        "weights_mb": next(e["weights_mb"] for e in events if "weights_mb" in e),
        "wall_s": round(time.time() - began, 1),
    }


def peak_rss_mb(command: list[str], phases: dict | None = None, events: Path | None = None) -> float:
    """The job's peak RSS (ru_maxrss, from wait4). With `phases`, also its RSS sampled every 0.2 s, highest
    before the `training` status event (loading: model, tokenizer, data) and from it on (`load_mb`, `train_mb`)."""
    import psutil

    job = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    process = psutil.Process(job.pid)
    if phases is not None:
        phases.update(load_mb=0, train_mb=0)
    while True:
        # wait4, not poll(): poll reaps the child and its resource usage with it.
        pid, status, usage = os.wait4(job.pid, os.WNOHANG if phases is not None else 0)
        if pid:
            break
        try:
            rss = process.memory_info().rss / 2**20
        except psutil.NoSuchProcess:
            continue
        training = events is not None and events.exists() and '"training"' in events.read_text(encoding="utf-8")
        key = "train_mb" if training else "load_mb"
        phases[key] = round(max(phases[key], rss))
        time.sleep(0.2)
    if os.waitstatus_to_exitcode(status):
        raise SystemExit(f"{' '.join(command[-3:])}: exited with {os.waitstatus_to_exitcode(status)}")
    return usage.ru_maxrss / 1024  # Linux reports KiB


def runtime_baseline(model_dir: Path) -> float:
    """Peak RSS of a process that imports what a job imports and loads the tokenizer, but no model."""
    code = (
        "import backend.train, backend.training.sft, peft, bitsandbytes; "
        "from backend.models.sources import load_tokenizer; "
        f"load_tokenizer({str(model_dir)!r})"
    )
    return peak_rss_mb([sys.executable, "-c", code])


def compare(measured: dict, hardware: dict) -> dict:
    """A case's measurement beside the estimate for its settings."""
    from backend.capability import choose
    from backend.config import TrainConfig
    from backend.fit import estimate
    from backend.models.info import inspect_model

    config = TrainConfig.from_dict(measured["settings"])
    row = estimate(inspect_model(config.model), config, choose(config, hardware))
    return {
        **measured,
        "estimate": row.as_dict(),
        "estimate_mb": round(row.total_mb),
        "error": round(row.total_mb / measured["peak_rss_mb"] - 1, 3),
    }


def summary(cases: dict, baseline_mb: float) -> dict:
    errors = [abs(case["error"]) for case in cases.values()]
    return {
        "runtime_baseline_mb": baseline_mb,
        "cases": cases,
        "max_abs_error": max(errors),
        "mean_abs_error": round(sum(errors) / len(errors), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--reestimate", type=Path, help="a previous result: compare its measurements again")
    args = parser.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TUNEFORGE_CACHE", str(ROOT / ".cache" / "tuneforge"))  # where the tests build TINY
    from backend.capability import hardware_summary
    from backend.models.sources import default_model_dir
    from backend.paths import model_cache_dir

    hardware = hardware_summary()
    if args.reestimate:
        before = json.loads(args.reestimate.read_text(encoding="utf-8"))
        cases = {name: compare(case, hardware) for name, case in before["cases"].items()}
        print(json.dumps(summary(cases, before["runtime_baseline_mb"])))
        return
    default_dir = default_model_dir(progress=lambda msg: None)
    tiny_dir = model_cache_dir() / TINY
    workdir = Path(tempfile.mkdtemp(prefix="tuneforge-fit-"))
    data = long_examples(workdir / "long.json")
    baseline = round(runtime_baseline(default_dir))
    cases = {}
    for name in args.cases.split(","):
        model, options = CASES[name]
        if model.startswith("scale:"):
            from bench.scale import model_folder

            model = str(model_folder(model.removeprefix("scale:")))
        model = str(tiny_dir) if model == "tiny" else model
        cases[name] = compare(run_case(workdir, name, model, options, data), hardware)
        print(json.dumps({name: cases[name]}), flush=True)  # each case as it completes: a long run keeps its parts
    print(json.dumps(summary(cases, baseline)))


if __name__ == "__main__":
    main()
