"""DoRA, rsLoRA, PiSSA and LoRA+ under LLaMA-Factory's key names: trained on the tiny model, loaded with plain PEFT."""

import json

import pytest
import torch
from peft import PeftModel
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.events import EventLog, read_events
from backend.llamafactory import load_config_file
from backend.train import prepare_run_dir
from backend.training.task_recipes import recipe_for
from tests.helpers import DATA

IDS = torch.tensor([[1, 2, 3, 4, 5, 6]])


def train_in_process(run_dir, tiny_model, resume_from=None, **options):
    """A 3-step run as the CLI would make it, keeping the recipe for a look at its model and optimizer."""
    config = TrainConfig.from_dict(
        {
            "model": tiny_model,
            "dataset": str(DATA / "alpaca.json"),
            "output_dir": str(run_dir),
            "max_steps": 3,
            "learning_rate": 1e-2,
            "val_size": 0.0,
            "lora_rank": 4,
            "lora_alpha": 8,
            "report_to": "none",
            # The checks below compare logits at fp32's tolerance; on a CPU with native bf16, auto would load
            # the frozen base in bf16, whose rounding alone moves the logits by ~5e-3.
            "precision": "fp32",
            **options,
        }
    )
    run_dir = prepare_run_dir(config)
    recipe = recipe_for(config, EventLog(run_dir), run_dir, resume_from)
    recipe.setup()
    recipe.save(recipe.train())
    return recipe


def logits(model):
    with torch.no_grad():
        return model.eval()(input_ids=IDS).logits


def plain_peft(tiny_model, adapter_dir):
    return PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), str(adapter_dir))


def test_pissa_rslora_loraplus_run_saves_a_plain_lora_that_peft_loads_and_resumes_to_the_same_weights(
    tmp_path, tiny_model
):
    run_dir = tmp_path / "run"
    options = {"pissa_init": True, "pissa_iter": 2, "use_rslora": True, "loraplus_lr_ratio": 16.0, "save_steps": 2}
    recipe = train_in_process(run_dir, tiny_model, **options)

    # LoRA+: every B matrix, and nothing else, learns 16 times faster than the A matrices.
    rates = {id(p): g["initial_lr"] for g in recipe.trainer.optimizer.param_groups for p in g["params"]}
    named = dict(recipe.model.named_parameters())
    assert {name: rates[id(p)] for name, p in named.items() if p.requires_grad} == {
        name: pytest.approx(0.16 if "lora_B" in name else 0.01) for name, p in named.items() if p.requires_grad
    }

    # PiSSA: saved as plain LoRA of twice the rank, whose scale alpha/sqrt(r) rsLoRA keeps unchanged.
    saved = json.loads((run_dir / "adapter_config.json").read_text())
    assert saved["init_lora_weights"] is True and saved["r"] == 8 and saved["use_rslora"] is True
    assert saved["lora_alpha"] / saved["r"] ** 0.5 == pytest.approx(8 / 4**0.5)
    assert not (run_dir / "pissa_init").exists()
    ours = logits(recipe.model)
    base = logits(AutoModelForCausalLM.from_pretrained(tiny_model))
    assert (ours - base).abs().max() > 1e-2  # it trained
    torch.testing.assert_close(logits(plain_peft(tiny_model, run_dir)), ours, atol=1e-5, rtol=0)

    # Resuming at step 2 recomputes the same PiSSA base and restores LoRA+'s optimizer: the same final adapter.
    uninterrupted = load_file(run_dir / "adapter_model.safetensors")
    train_in_process(run_dir, tiny_model, resume_from=run_dir / "checkpoint-2", **options)
    resumed = load_file(run_dir / "adapter_model.safetensors")
    assert [e["step"] for e in read_events(run_dir) if e["type"] == "log"] == [1, 2, 3, 3]  # one step, not three
    assert resumed.keys() == uninterrupted.keys()
    for name, tensor in uninterrupted.items():
        torch.testing.assert_close(resumed[name], tensor, atol=1e-5, rtol=0)


def test_dora_adapter_keeps_its_magnitudes_and_loads_with_plain_peft(tmp_path, tiny_model):
    recipe = train_in_process(tmp_path / "run", tiny_model, use_dora=True)
    assert json.loads((tmp_path / "run" / "adapter_config.json").read_text())["use_dora"] is True
    weights = load_file(tmp_path / "run" / "adapter_model.safetensors")
    assert any("lora_magnitude_vector" in name for name in weights)
    torch.testing.assert_close(
        logits(plain_peft(tiny_model, tmp_path / "run")), logits(recipe.model), atol=1e-5, rtol=0
    )


@pytest.mark.parametrize(
    "options, message",
    [
        ({"method": "full", "use_dora": True}, r"^use_dora applies to method lora or qlora, not full$"),
        ({"method": "freeze", "loraplus_lr_ratio": 16}, r"^loraplus_lr_ratio applies to method lora or qlora"),
        ({"loraplus_lr_ratio": -1}, r"^loraplus_lr_ratio=-1.0 is out of range \[0.0, 1000.0\]$"),
        ({"method": "qlora", "pissa_init": True}, r"^pissa_init needs an unquantized model"),
        ({"pissa_init": True, "use_dora": True}, r"^pissa_init and use_dora cannot be combined"),
        ({"task": "dpo", "pissa_init": True}, r"^pissa_init does not apply to task dpo"),
        ({"pissa_init": True, "strategy": "fsdp"}, r"^pissa_init needs strategy ddp"),
        ({"pissa_iter": -2}, r"^pissa_iter=-2 is out of range"),
    ],
)
def test_a_variant_that_cannot_apply_is_refused_in_one_line(options, message):
    with pytest.raises(TuneForgeError, match=message):
        TrainConfig.from_dict(options)


def test_llamafactory_yaml_keys_for_the_variants_translate():
    text = (
        "stage: sft\nfinetuning_type: lora\nuse_dora: true\nuse_rslora: true\nloraplus_lr_ratio: 16.0\n"
        "loraplus_lr_embedding: 1.0e-6\n"
    )
    options = load_config_file(text)
    assert (options["use_dora"], options["use_rslora"], options["loraplus_lr_ratio"]) == (True, True, 16.0)
    options = load_config_file("stage: sft\npissa_init: true\npissa_iter: -1\npissa_convert: true\n")
    assert (options["pissa_init"], options["pissa_iter"], options["loraplus_lr_ratio"]) == (True, -1, 0.0)
    assert load_config_file("stage: sft\nloraplus_lr_ratio: null\n")["loraplus_lr_ratio"] == 0.0
    with pytest.raises(TuneForgeError, match=r"'use_galore' is not supported"):
        load_config_file("stage: sft\nuse_dora: true\nuse_galore: true\n")
    with pytest.raises(TuneForgeError, match=r"^use_dora applies to method lora or qlora, not full$"):
        load_config_file("stage: sft\nfinetuning_type: full\nuse_dora: true\n")
