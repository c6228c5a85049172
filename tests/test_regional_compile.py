"""torch_compile: each decoder block compiled in place, its kernels cached per model and torch version."""

from __future__ import annotations

import json

import pytest
import torch
from safetensors import safe_open

from backend.events import read_events
from backend.training.regional_compile import compile_cache_dir
from tests.helpers import run_cli, write_config


def test_the_compile_cache_is_kept_per_model_and_torch_version(tmp_path, monkeypatch):
    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    one, other = tmp_path / "one", tmp_path / "other"
    for folder, layers in ((one, 2), (other, 4)):
        folder.mkdir()
        (folder / "config.json").write_text(json.dumps({"num_hidden_layers": layers}))
    assert compile_cache_dir(one) != compile_cache_dir(other)  # same folder name pattern, another config
    assert compile_cache_dir(one) == compile_cache_dir(one)
    assert compile_cache_dir(one).name.startswith("torch-") and torch.__version__.split("+")[0] in str(
        compile_cache_dir(one)
    )
    assert compile_cache_dir(one).is_relative_to(tmp_path / "cache")


@pytest.mark.slow
def test_a_compiled_run_trains_says_so_and_saves_the_eager_names(tmp_path, small_model, secret_dataset):
    """Slow (about 35 CPU-seconds with an empty inductor cache, a few with a warm one): inductor compiles the
    tiny model's block forward and backward with g++. Two steps, no evaluation: only the plumbing."""
    run_dir = tmp_path / "compiled"
    config = write_config(
        tmp_path / "run.yaml",
        model=small_model,
        dataset=str(secret_dataset),
        output_dir=str(run_dir),
        max_steps=2,
        val_size=0,
        save_steps=0,
        torch_compile=True,
    )
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-2000:]
    events = read_events(run_dir)
    compiled = [e for e in events if e.get("compiled_blocks") is not None]
    assert compiled and compiled[0]["compiled_blocks"] == 2, compiled  # the tiny llama's two blocks
    assert "torch_compile: 2 decoder blocks (LlamaDecoderLayer)" in (run_dir / "train.log").read_text()
    assert events[-1]["status"] == "completed" and events[-1]["global_step"] == 2
    counters = json.loads((run_dir / "metrics.json").read_text())["compile"]
    assert counters["graphs"] >= 1  # dynamo really compiled, not a silent fallback to eager
    assert counters["fx_cache_hits"] + counters["fx_cache_misses"] >= 1  # and inductor produced kernels
    with safe_open(run_dir / "adapter_model.safetensors", "pt") as weights:
        names = list(weights.keys())
    assert names and not any("_orig_mod" in name for name in names)  # compiled in place: PEFT's own names
