"""GPU runs: LoRA, QLoRA 4-bit and full fine-tuning of a ~0.5B model built from a config, bf16, and
DeepSpeed/FSDP in one process. Marked `gpu`; skipped where torch sees no CUDA device.

The model is a Llama-shaped config with random weights (no hub): the point is that each path trains,
saves and reloads on a GPU, and what speed it reaches (printed for docs/benchmarks.md).
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys

import pytest

from backend.events import read_events
from tests.helpers import ROOT, free_port, run_cli, write_config


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not _cuda(), reason="needs a CUDA GPU; none here")]


@pytest.fixture(scope="module")
def half_billion_model(tmp_path_factory, default_model_dir) -> str:
    """About 0.46B parameters: 32 layers of width 1024 over SmolLM2's tokenizer, randomly initialised."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=1024,
        intermediate_size=2816,
        num_hidden_layers=32,
        num_attention_heads=16,
        num_key_value_heads=4,
        max_position_embeddings=2048,
        tie_word_embeddings=True,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.bfloat16)
    folder = tmp_path_factory.mktemp("models") / "llama-0.5b"
    model.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    assert 0.4e9 < sum(p.numel() for p in model.parameters()) < 0.6e9
    return str(folder)


def train(tmp_path, model, secret_dataset, **options):
    run_dir = tmp_path / "run"
    config = dict(model=model, dataset=str(secret_dataset), output_dir=str(run_dir), max_steps=3, val_size=0)
    config.update(save_steps=0, report_to="none", per_device_train_batch_size=4, **options)
    result = run_cli(write_config(tmp_path / "run.yaml", **config))
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    events = read_events(run_dir)
    assert events[-1]["status"] == "completed"
    speed = [e["tokens_per_s"] for e in events if e["type"] == "log"][-1]
    print(f"\n{options}: {speed} tokens/s")
    return run_dir, events


@pytest.mark.parametrize("method", ["lora", "full"])
def test_lora_and_full_train_in_bf16(tmp_path, half_billion_model, secret_dataset, method):
    run_dir, events = train(tmp_path, half_billion_model, secret_dataset, method=method)
    assert "loading model (bf16)" in [e.get("message") for e in events]
    assert (run_dir / ("adapter_model.safetensors" if method == "lora" else "config.json")).exists()


@pytest.mark.skipif(importlib.util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_trains_a_4bit_model_and_the_adapter_loads(tmp_path, half_billion_model, secret_dataset):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, events = train(tmp_path, half_billion_model, secret_dataset, method="qlora")
    assert "loading model (bf16, 4-bit base)" in [e.get("message") for e in events]
    PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(half_billion_model), run_dir)


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is None, reason="needs the deepspeed package")
def test_deepspeed_zero2_in_one_process(tmp_path, half_billion_model, secret_dataset):
    run_dir, _ = train(tmp_path, half_billion_model, secret_dataset, method="full", strategy="deepspeed_zero2")
    assert (run_dir / "ds_config.json").exists()


def test_fsdp_in_one_process_under_torchrun(tmp_path, half_billion_model, secret_dataset):
    """FSDP needs a process group even for one process, so this one is started as torchrun would."""
    run_dir = tmp_path / "run"
    options = dict(model=half_billion_model, dataset=str(secret_dataset), output_dir=str(run_dir), max_steps=3)
    config = write_config(tmp_path / "run.yaml", method="full", strategy="fsdp", val_size=0, save_steps=0, **options)
    port = str(free_port())
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "1", "--master_port", port]
    result = subprocess.run([*command, "-m", "backend.train", "--config", str(config)], cwd=ROOT, capture_output=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert read_events(run_dir)[-1]["status"] == "completed" and (run_dir / "fsdp_config.json").exists()
