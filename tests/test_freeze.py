"""Freeze tuning: only the last N decoder layers learn, and the result is a model plain transformers loads."""

from __future__ import annotations

import pytest
from safetensors.torch import load_file

from backend.events import read_events
from tests.helpers import run_cli_in_process, write_config

LAYERS = 2  # the tiny model


def test_freeze_trains_only_the_last_layers_and_saves_a_full_model(tmp_path, secret_dataset, tiny_model_dir):
    from transformers import AutoModelForCausalLM

    run_dir = tmp_path / "freeze"
    options = dict(dataset=str(secret_dataset), output_dir=str(run_dir), method="freeze", freeze_trainable_layers=1)
    options["model"] = str(tiny_model_dir)
    options.update(max_steps=2, learning_rate=1e-3, val_size=0, save_steps=0, report_to="none")
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", **options))
    assert result.returncode == 0, result.stderr[-2000:]
    assert "freeze: training decoder layers 1-1 only" in (run_dir / "train.log").read_text()

    base = load_file(tiny_model_dir / "model.safetensors")
    tuned = AutoModelForCausalLM.from_pretrained(run_dir).state_dict()
    changed = {name for name, weight in base.items() if not weight.equal(tuned[name])}
    trained = {name for name in base if name.startswith("model.layers.1.")}
    assert changed == trained  # every weight of the last layer moved, and nothing else did

    # Speed as arithmetic: forward through every layer, backward through the trained layer only (the count
    # itself is checked against torch's FLOP counter in test_flops.py).
    log = [e for e in read_events(run_dir) if e["type"] == "log"][-1]
    layer = sum(base[name].numel() for name in trained if name.endswith("proj.weight"))
    body = 2 * layer  # the tiny model's two layers are alike
    head_per_token = log["flops_per_token"] - 2 * body - 4 * layer  # forward body; backward through layer 1 only
    assert 0 < head_per_token < 4 * base["model.embed_tokens.weight"].numel()  # the head, for trained tokens only
    assert log["gflops"] == pytest.approx(log["tokens_per_s"] * log["flops_per_token"] / 1e9, abs=0.06)


def test_freeze_asks_for_no_more_layers_than_the_model_has(tmp_path, secret_dataset, tiny_model):
    options = dict(dataset=str(secret_dataset), method="freeze", freeze_trainable_layers=LAYERS + 1, max_steps=1)
    options.update(model=tiny_model, output_dir=str(tmp_path / "run"), val_size=0)
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", **options))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1] == (
        f"error: freeze_trainable_layers={LAYERS + 1}: the model has {LAYERS} decoder layers; "
        f"choose 1 to {LAYERS} (or -1 to -{LAYERS} for the first ones)"
    )
