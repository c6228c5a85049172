"""Training speed for a model and settings, measured with a few real steps and cached (the app's half).

The measurement is a short job of its own (backend.training.speed_trial), run in a subprocess
so that it takes the same code path as a real job and the app never loads torch. Its result
is cached per model and settings in the model cache folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.paths import PROJECT_ROOT, model_cache_dir

SPEED_SETTINGS = ("model", "method", "lora_rank", "lora_target", "per_device_train_batch_size", "cutoff_len", "task")


def speed_key(config: TrainConfig) -> str:
    return "|".join(f"{name}={getattr(config, name)}" for name in SPEED_SETTINGS) + f"|cpus={os.cpu_count()}"


def _cache_path() -> Path:
    return model_cache_dir().parent / "speed.json"


def cached_speed(config: TrainConfig) -> float | None:
    try:
        return json.loads(_cache_path().read_text()).get(speed_key(config))
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _store(config: TrainConfig, tokens_per_s: float) -> None:
    path = _cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        cache = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError):
        cache = {}
    cache[speed_key(config)] = tokens_per_s
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(cache, indent=1))
    os.replace(tmp, path)


def measure_speed(config: TrainConfig, workspace: Path | None = None, timeout: float = 600) -> float:
    """Run the calibration job (cached per model and settings); returns training tokens per second."""
    known = cached_speed(config)
    if known:
        return known
    with tempfile.TemporaryDirectory(prefix="tuneforge-calibrate-") as tmp:
        path = Path(tmp) / "run.yaml"
        path.write_text(config.to_yaml(), encoding="utf-8")
        env = {**os.environ}
        if workspace is not None:
            env["TUNEFORGE_WORKSPACE"] = str(workspace)
        result = subprocess.run(
            [sys.executable, "-m", "backend.training.speed_trial", "--config", str(path)],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        error = (result.stderr.strip().splitlines() or ["calibration failed"])[-1]
        raise TuneForgeError(error.removeprefix("error: "))
    tokens_per_s = json.loads(lines[-1])["tokens_per_s"]
    _store(config, tokens_per_s)
    return tokens_per_s
