"""A merged model folder (safetensors + tokenizer) written as one GGUF file, for llama.cpp, Ollama and LM Studio.

Built on the `gguf` package that ggml publishes with llama.cpp: its GGUFWriter, its tensor-name map
(`get_tensor_name_map`, the table llama.cpp's own converter reads), its SpecialVocab (merges, special
token ids, chat template) and its quantizers. What the package does not ship is the per-architecture
glue of llama.cpp's `convert_hf_to_gguf.py`, which is not on PyPI; the part of it the studio needs,
for the Llama-family architectures it trains, is here:

- the hyperparameters llama.cpp reads for a llama or qwen2 model;
- the GPT-2 style BPE vocabulary of tokenizer.json, special tokens marked as control tokens;
- the rotary layout: llama.cpp's llama graph expects q_proj and k_proj rows in GGML's rope order,
  so those two weights are permuted (qwen2's graph takes them as they are).

Any other architecture is refused in one line before anything is written.

Types: f16, bf16 and q8_0 (llama.cpp's 8-bit block quantization; a matrix whose rows are not whole
blocks stays f16). 1-D tensors (norms, biases) stay f32, as llama.cpp keeps them. The k-quants
(q4_k_m, ...) are not offered: the package reads them but cannot write them, and its q4_0 moved a
135M model's greedy next token at 1 position in 5 of a short chat: too far to call verified.

Every file is read back before it is kept (`verify_gguf`): transformers loads it (dequantized) and
its logits on a fixed chat are compared with the merged model's, within a bound per type.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from backend.errors import TuneForgeError

GGUF_TYPES = ("f16", "bf16", "q8_0")
# gguf_type → (largest logit difference, relative to the largest logit, and the least share of positions
# whose likeliest next token agrees). Measured on SmolLM2-135M's probe chat: f16 0.0011 and 1.0, bf16 0.0073
# and 1.0, q8_0 0.035 and 0.98 (bench/gguf_export.py, docs/benchmarks.md).
BOUNDS = {"f16": (0.005, 0.95), "bf16": (0.02, 0.95), "q8_0": (0.05, 0.9)}
PROBE = [{"role": "user", "content": "Write one sentence about the sea."}]
PROBE_ANSWER = "The sea is wide and deep, and its waves"
# A model above this size is not read back: two float32 copies of it would not fit a typical machine.
VERIFY_MAX_BYTES = 4 * 1024**3
# architecture in config.json → (llama.cpp's architecture name, whether q/k rows are permuted for its rope)
ARCHITECTURES = {
    "LlamaForCausalLM": ("llama", True),
    "MistralForCausalLM": ("llama", True),
    "Qwen2ForCausalLM": ("qwen2", False),
}


def check_architecture(config: dict[str, Any]) -> tuple[str, bool]:
    """llama.cpp's name for the model's architecture, or a one-line refusal."""
    names = config.get("architectures") or [config.get("model_type", "?")]
    if names[0] not in ARCHITECTURES:
        known = ", ".join(sorted({a[0] for a in ARCHITECTURES.values()}))
        raise TuneForgeError(
            f"GGUF export covers the {known} architectures; this model is {names[0]}. Export it as merged "
            "safetensors and convert it with llama.cpp's convert_hf_to_gguf.py"
        )
    window = config.get("sliding_window")
    if "layer_types" in config:  # transformers 5 says per layer
        windowed = "sliding_attention" in config["layer_types"]
    else:
        windowed = config.get("use_sliding_window", names[0] != "Qwen2ForCausalLM")  # qwen2 has it off by default
    if windowed and window and window < config.get("max_position_embeddings", 0):
        raise TuneForgeError(
            f"this {names[0]} attends through a sliding window of {window} tokens, which a GGUF of its "
            "architecture does not carry: llama.cpp would attend to the whole context and answer differently"
        )
    return ARCHITECTURES[names[0]]


def write_gguf(model_dir: Path, out: Path, gguf_type: str, facts: dict[str, str] | None = None) -> Path:
    """Write the merged model in model_dir to `out` as GGUF of gguf_type; facts: model card lines for metadata."""
    import gguf

    if gguf_type not in GGUF_TYPES:
        raise TuneForgeError(f"gguf_type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    arch_name, permute_qk = check_architecture(config)
    arch = next(a for a, name in gguf.MODEL_ARCH_NAMES.items() if name == arch_name)
    writer = gguf.GGUFWriter(str(out), arch_name)
    _hyperparameters(writer, config, gguf_type)
    for key, value in (facts or {}).items():
        writer.add_string(f"general.{key}", str(value))
    _vocabulary(writer, model_dir, config, arch_name)
    names = gguf.get_tensor_name_map(arch, config["num_hidden_layers"])
    heads, kv_heads = config["num_attention_heads"], config.get("num_key_value_heads") or config["num_attention_heads"]
    for name, tensor in _tensors(model_dir):
        gguf_name = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if gguf_name is None:
            raise TuneForgeError(f"GGUF export: the model's tensor {name} has no place in a {arch_name} GGUF")
        if permute_qk and name.endswith("q_proj.weight"):
            tensor = _rope_rows(tensor, heads)
        elif permute_qk and name.endswith("k_proj.weight"):
            tensor = _rope_rows(tensor, kv_heads)
        data, qtype = _encoded(tensor, gguf_type)
        writer.add_tensor(gguf_name, data, raw_dtype=qtype)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return out


def _hyperparameters(writer, config: dict[str, Any], gguf_type: str) -> None:
    import gguf

    heads = config["num_attention_heads"]
    head_dim = config.get("head_dim") or config["hidden_size"] // heads
    writer.add_context_length(config.get("max_position_embeddings", 2048))
    writer.add_embedding_length(config["hidden_size"])
    writer.add_block_count(config["num_hidden_layers"])
    writer.add_feed_forward_length(config["intermediate_size"])
    writer.add_head_count(heads)
    writer.add_head_count_kv(config.get("num_key_value_heads") or heads)
    writer.add_rope_dimension_count(head_dim)
    writer.add_layer_norm_rms_eps(config.get("rms_norm_eps", 1e-6))
    theta = config.get("rope_theta") or (config.get("rope_parameters") or {}).get("rope_theta") or 10000.0
    writer.add_rope_freq_base(float(theta))
    writer.add_vocab_size(config["vocab_size"])
    file_type = {
        "f16": gguf.LlamaFileType.MOSTLY_F16,
        "bf16": gguf.LlamaFileType.MOSTLY_BF16,
        "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    }[gguf_type]
    writer.add_file_type(file_type)


def _vocabulary(writer, model_dir: Path, config: dict[str, Any], arch_name: str) -> None:
    """tokenizer.json's byte-level BPE as llama.cpp's `gpt2` tokenizer; special tokens as control tokens."""
    import gguf

    try:
        tokenizer = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuneForgeError("GGUF export needs the model's tokenizer.json (a fast tokenizer)") from None
    model = tokenizer.get("model") or {}
    decoder = (tokenizer.get("decoder") or {}).get("type")
    if model.get("type") != "BPE" or model.get("byte_fallback") or decoder != "ByteLevel":
        raise TuneForgeError("GGUF export covers byte-level BPE tokenizers (GPT-2 style); this model's is another kind")
    by_id: dict[int, tuple[str, int]] = {i: (text, gguf.TokenType.NORMAL) for text, i in model["vocab"].items()}
    for added in tokenizer.get("added_tokens") or []:
        kind = gguf.TokenType.CONTROL if added.get("special") else gguf.TokenType.USER_DEFINED
        by_id[added["id"]] = (added["content"], kind)
    size = max(config["vocab_size"], max(by_id) + 1)
    tokens = [by_id.get(i, (f"[PAD{i}]", gguf.TokenType.UNUSED)) for i in range(size)]
    writer.add_tokenizer_model("gpt2")
    writer.add_tokenizer_pre(_pre_tokenizer(tokenizer, arch_name))
    writer.add_token_list([text for text, _ in tokens])
    writer.add_token_types([kind for _, kind in tokens])
    special = gguf.SpecialVocab(model_dir, load_merges=True, n_vocab=size)  # merges, special ids, chat template
    template = model_dir / "chat_template.jinja"
    if special.chat_template is None and template.exists():  # transformers 5 saves it beside tokenizer_config
        special.chat_template = template.read_text(encoding="utf-8")
    special.add_to_gguf(writer, quiet=True)


def _pre_tokenizer(tokenizer: dict[str, Any], arch_name: str) -> str:
    """llama.cpp's name for how text is split before BPE: GPT-2's own split, Qwen2's, or its default."""
    pre = tokenizer.get("pre_tokenizer") or {}
    if pre.get("type") == "ByteLevel" and pre.get("use_regex", True):
        return "gpt-2"  # what transformers writes for a tokenizer it read from a GGUF, the embedded model's
    return "qwen2" if arch_name == "qwen2" else "default"


def _tensors(model_dir: Path):
    """(name, float32 array) for every tensor of the folder's safetensors files."""
    from safetensors import safe_open

    files = sorted(model_dir.glob("*.safetensors"))
    if not files:
        raise TuneForgeError(f"{model_dir} has no safetensors weights to convert")
    for path in files:
        with safe_open(str(path), framework="pt") as f:
            for name in f.keys():
                yield name, f.get_tensor(name).float().numpy()


def _rope_rows(weight: np.ndarray, heads: int) -> np.ndarray:
    """Reorder each head's rows from the two-halves rotary layout (transformers) to interleaved pairs (GGML)."""
    rows = weight.shape[0]
    return weight.reshape(heads, 2, rows // heads // 2, *weight.shape[1:]).swapaxes(1, 2).reshape(weight.shape)


def _encoded(tensor: np.ndarray, gguf_type: str):
    """The tensor as stored in the file, and its GGML type."""
    import gguf

    kinds = gguf.GGMLQuantizationType
    if tensor.ndim < 2:
        return tensor.astype(np.float32), kinds.F32
    if gguf_type == "f16":
        return tensor.astype(np.float16), kinds.F16
    qtype = {"bf16": kinds.BF16, "q8_0": kinds.Q8_0}[gguf_type]
    block = gguf.GGML_QUANT_SIZES[qtype][0]
    if tensor.shape[-1] % block:
        return tensor.astype(np.float16), kinds.F16
    return gguf.quants.quantize(tensor, qtype), qtype


def verify_gguf(model_dir: Path, gguf_path: Path, gguf_type: str) -> dict[str, Any]:
    """Read the file back with transformers and compare it with the merged model on a fixed chat.

    Returns tokens_match (the file's tokenizer splits the chat as the model's does), max_logit_diff,
    relative_diff (to the largest logit), top1_agreement, the bound, and passed; or {"skipped": why}
    for a model too large to hold twice."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    if size > VERIFY_MAX_BYTES:
        return {"skipped": f"the model is {size / 1024**3:.1f} GB; read back only up to 4 GB"}
    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True) + PROBE_ANSWER
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    read_back = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokens_match = read_back(text, add_special_tokens=False)["input_ids"] == ids
    logits = []
    for folder, extra in ((model_dir, {}), (gguf_path.parent, {"gguf_file": gguf_path.name})):
        model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **extra)
        with torch.no_grad():
            logits.append(model(torch.tensor([ids])).logits[0])
        del model
    merged, exported = logits
    diff = (merged - exported).abs().max().item()
    relative = diff / max(merged.abs().max().item(), 1e-9)
    agreement = (merged.argmax(-1) == exported.argmax(-1)).float().mean().item()
    largest, least_agreement = BOUNDS[gguf_type]
    return {
        "tokens_match": tokens_match,
        "max_logit_diff": round(diff, 5),
        "relative_diff": round(relative, 5),
        "top1_agreement": round(agreement, 4),
        "bound": {"relative_diff": largest, "top1_agreement": least_agreement},
        "passed": tokens_match and relative <= largest and agreement >= least_agreement,
    }
