"""A .gguf converted tensor by tensor gives the model transformers' own GGUF load gives: the same names, the same
logits in fp32, and within bf16's rounding in bf16. The tiny GGUF holds every kind of tensor the converter
meets: Q8_0 and Q4_1 (transformers' torch kernels), Q5_0 and BF16 (the gguf package's), F16 and F32, and
Llama's permuted query and key rows."""

from __future__ import annotations

import json
import struct

import numpy as np
import pytest

from tests.helpers import SPECIAL, byte_level_alphabet

HIDDEN, LAYERS, HEADS = 64, 2, 4
KINDS = {"attn_q": "Q4_1", "attn_k": "Q5_0", "attn_v": "F16", "attn_output": "BF16"}


@pytest.fixture(scope="module")
def mixed_gguf(tmp_path_factory):
    import gguf

    path = tmp_path_factory.mktemp("gguf") / "mixed.gguf"
    tokens = SPECIAL + byte_level_alphabet() + ["\u0120t"]  # and one merge, Ġ t: " t"
    writer = gguf.GGUFWriter(str(path), "llama")
    for add, value in [
        (writer.add_block_count, LAYERS), (writer.add_context_length, 256), (writer.add_embedding_length, HIDDEN),
        (writer.add_feed_forward_length, 2 * HIDDEN), (writer.add_head_count, HEADS),
        (writer.add_head_count_kv, HEADS // 2), (writer.add_layer_norm_rms_eps, 1e-5),
        (writer.add_rope_freq_base, 10000.0), (writer.add_rope_dimension_count, HIDDEN // HEADS),
        (writer.add_vocab_size, len(tokens)), (writer.add_tokenizer_model, "gpt2"),
        (writer.add_tokenizer_pre, "smollm"), (writer.add_token_list, tokens),
        (writer.add_token_types, [3] * len(SPECIAL) + [1] * (len(tokens) - 3)),
        (writer.add_token_merges, ["\u0120 t"]), (writer.add_bos_token_id, 1), (writer.add_eos_token_id, 2),
    ]:  # fmt: skip
        add(value)
    rng = np.random.default_rng(0)

    def put(name: str, values: np.ndarray, kind: str = "F32") -> None:
        q = gguf.GGMLQuantizationType[kind]
        if kind == "F32":
            writer.add_tensor(name, values)
        elif kind == "F16":
            writer.add_tensor(name, values.astype(np.float16))
        else:
            writer.add_tensor(name, gguf.quants.quantize(values, q), raw_dtype=q)

    put("token_embd.weight", (rng.standard_normal((len(tokens), HIDDEN)) * 0.5).astype(np.float32), "Q8_0")
    kv = HEADS // 2 * (HIDDEN // HEADS)
    for i in range(LAYERS):
        for name, shape in (
            ("attn_q", (HIDDEN, HIDDEN)), ("attn_k", (kv, HIDDEN)), ("attn_v", (kv, HIDDEN)),
            ("attn_output", (HIDDEN, HIDDEN)), ("ffn_gate", (2 * HIDDEN, HIDDEN)), ("ffn_up", (2 * HIDDEN, HIDDEN)),
            ("ffn_down", (HIDDEN, 2 * HIDDEN)),
        ):  # fmt: skip
            put(f"blk.{i}.{name}.weight", (rng.standard_normal(shape) * 0.2).astype(np.float32), KINDS.get(name, "F32"))
        put(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        put(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
    put("output_norm.weight", np.ones(HIDDEN, np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path


@pytest.fixture(scope="module")
def reference(mixed_gguf):
    """transformers' own GGUF load (what convert_gguf saved before): every tensor dequantized into fp32."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(mixed_gguf.parent, gguf_file=mixed_gguf.name)


def converted(gguf_path, tmp_path, dtype: str):
    import torch
    from transformers import AutoModelForCausalLM

    from backend.models.sources import convert_gguf

    convert_gguf(gguf_path, tmp_path / dtype, dtype=dtype)
    return tmp_path / dtype, AutoModelForCausalLM.from_pretrained(tmp_path / dtype, dtype=torch.float32)


def logits(model):
    import torch

    ids = torch.tensor([[1, 40, 72, 101, 108, 108, 111, 44, 32, 119, 111, 114, 108, 100, 2]])
    with torch.no_grad():
        return model(ids).logits


def header(folder) -> dict:
    with open(folder / "model.safetensors", "rb") as f:
        (size,) = struct.unpack("<Q", f.read(8))
        return json.loads(f.read(size))


def test_in_fp32_the_converted_model_is_exactly_transformers_own(mixed_gguf, reference, tmp_path):
    folder, model = converted(mixed_gguf, tmp_path, "float32")
    assert set(model.state_dict()) == set(reference.state_dict())
    for name, tensor in reference.state_dict().items():
        assert np.array_equal(model.state_dict()[name].numpy(), tensor.numpy()), name  # q and k rows unpermuted too
    assert np.array_equal(logits(model).numpy(), logits(reference).numpy())
    assert {entry["dtype"] for name, entry in header(folder).items() if name != "__metadata__"} == {"F32"}
    assert {"config.json", "generation_config.json", "tokenizer.json"} <= {f.name for f in folder.iterdir()}
    # The model class, as save_pretrained records it: llama.cpp's converter and the Model tab read it.
    assert json.loads((folder / "config.json").read_text())["architectures"] == [type(reference).__name__]


def test_in_bf16_the_converted_model_is_half_the_size_and_answers_alike(mixed_gguf, reference, tmp_path):
    folder, model = converted(mixed_gguf, tmp_path, "bfloat16")
    stored = header(folder)
    assert {entry["dtype"] for name, entry in stored.items() if name != "__metadata__"} == {"BF16"}
    # Stored in bf16, loaded by from_pretrained's "auto" in fp32 as before (chat on a CPU without native bf16).
    assert json.loads((folder / "config.json").read_text())["dtype"] == "float32"
    ours, theirs = logits(model), logits(reference)
    # bf16 keeps 8 significant bits: each weight moves by at most 0.4%, the logits by a few hundredths.
    assert (ours - theirs).abs().max() < 0.02 * theirs.abs().max()
    assert (ours.argmax(-1) == theirs.argmax(-1)).float().mean() >= 0.9
    assert not list(folder.glob("*.body"))  # the body file is joined into the safetensors file and gone
