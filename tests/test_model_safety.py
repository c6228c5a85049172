"""Loading a model never runs its code or unpickles arbitrary objects unless the owner opts in."""

import json

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.models.sources import load_causal_lm

MARKER_CODE = "import pathlib\npathlib.Path({marker!r}).write_text('ran')\n"


def tiny_llama(folder):
    config = LlamaConfig(
        hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2, vocab_size=64
    )
    LlamaForCausalLM(config).save_pretrained(folder)
    return folder


def test_a_model_with_its_own_code_is_refused_until_trusted(tmp_path):
    folder = tiny_llama(tmp_path / "custom")
    marker = tmp_path / "code-ran"
    (folder / "modeling_custom.py").write_text(MARKER_CODE.format(marker=str(marker)))
    config = json.loads((folder / "config.json").read_text())
    config["auto_map"] = {
        "AutoConfig": "modeling_custom.CustomConfig",
        "AutoModelForCausalLM": "modeling_custom.CustomModel",
    }
    config["model_type"] = "tuneforge_custom"  # an architecture transformers does not ship
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(TuneForgeError, match="ships its own Python code; turn on trust_remote_code only if you trust"):
        load_causal_lm(str(folder))
    assert not marker.exists()
    assert TrainConfig().trust_remote_code is False


def test_a_pickle_checkpoint_cannot_run_code_while_loading(tmp_path):
    folder = tiny_llama(tmp_path / "pickled")
    marker = tmp_path / "pickle-ran"
    state = {k: v for k, v in LlamaForCausalLM.from_pretrained(folder).state_dict().items()}

    class Payload:
        def __reduce__(self):
            return (exec, (MARKER_CODE.format(marker=str(marker)),))

    state["payload"] = Payload()
    for path in folder.glob("*.safetensors"):
        path.unlink()
    torch.save(state, folder / "pytorch_model.bin")
    with pytest.raises(TuneForgeError, match="its pickle checkpoint holds more than plain tensors, so it was not"):
        load_causal_lm(str(folder))
    assert not marker.exists()
