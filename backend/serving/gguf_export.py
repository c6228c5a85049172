"""A merged model folder written as one GGUF file by llama.cpp's own tools, and checked in llama.cpp.

llama.cpp's `convert_hf_to_gguf.py` (with its glue for every architecture it reads: the rope layouts,
sliding windows, soft-capping, tokenizers) writes f16 or bf16; `llama-quantize` makes q8_0 and the
k-quants people pull (q4_k_m, q5_k_m, q6_k) from the f16. An architecture the converter does not
register is refused in one line, naming it, before anything is merged.

Every file is checked by the runtime it is for (`verify`):
- llama-server loads it, and its greedy continuation of a fixed chat is compared, token by token,
  with the merged model's in transformers (`agree` of `tokens`), from the same prompt token ids;
  its tokenizer splits the chat as the model's does (`tokens_match`);
- llama-perplexity measures the file and the f16 on the run's held-out rows, or on the bundled
  general text (`ppl`, `ppl_f16`).
A file outside its type's bound is not kept.
"""

from __future__ import annotations

import json
import re
import tempfile
from functools import lru_cache
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError
from backend.models.vision import is_vision_folder, load_vision_model
from backend.serving import llamacpp

GGUF_TYPES = ("f16", "bf16", "q8_0", "q6_k", "q5_k_m", "q4_k_m")
CONVERTED = ("f16", "bf16")  # what the converter writes; the others llama-quantize makes from the f16
# gguf_type → (least share of the probe's greedy tokens that agree with transformers', largest ppl / ppl_f16).
# Measured on SmolLM2-135M (bench/gguf_export.py, docs/benchmarks.md: x1.0009 q8_0, x1.0056 q6_k, x1.124
# q5_k_m, x1.051 q4_k_m, its rows falling back from the k-quants' blocks); a k-quant's greedy path may part
# from the float model's early and still be a good file, so for those perplexity alone is the bound.
BOUNDS = {
    "f16": (0.5, 1.001),
    "bf16": (0.25, 1.02),
    "q8_0": (0.25, 1.02),
    "q6_k": (0.0, 1.05),
    "q5_k_m": (0.0, 1.15),
    "q4_k_m": (0.0, 1.15),
}
PROBE = [{"role": "user", "content": "Write one sentence about the sea."}]
PROBE_TOKENS = 24
TIE = 2e-3  # float16 keeps about 3 significant digits: logits this close are a tie broken by rounding
PPL_CTX, PPL_CHUNKS = 128, 8
GENERAL_TEXT = Path(__file__).resolve().parents[2] / "assets" / "general_text.txt"
# A model above this size is not run in transformers for the comparison: two float32 copies would not fit.
COMPARE_MAX_BYTES = 4 * 1024**3


@lru_cache(maxsize=1)
def convertible() -> frozenset[str]:
    """The transformers architectures llama.cpp's converter registers (read from its source, not imported:
    its gguf-py would shadow the installed gguf package in this process)."""
    names: set[str] = set()
    for path in (llamacpp.source_dir() / "conversion").glob("*.py"):
        for match in re.finditer(r"@ModelBase\.register\((.*?)\)\s*\n", path.read_text(encoding="utf-8"), re.S):
            names.update(re.findall(r"\"([^\"]+)\"", match.group(1)))
    return frozenset(names)


def check_architecture(config: dict[str, Any]) -> str:
    """The model's architecture when llama.cpp's converter takes it, or a one-line refusal naming it."""
    names = config.get("architectures") or [config.get("model_type", "?")]
    if names[0] not in convertible():
        raise TuneForgeError(
            f"llama.cpp cannot convert the {names[0]} architecture to GGUF; export the run as merged safetensors"
        )
    return names[0]


def write_gguf(
    model_dir: Path, out: Path, gguf_type: str, facts: dict[str, str] | None = None, base_dir: Path | None = None
) -> Path:
    """The merged model in model_dir as `out`, a GGUF of gguf_type; facts: general.* metadata (name, ...);
    base_dir: the model it was trained from (its SentencePiece tokenizer.model, where it has one).

    A quantized type leaves its f16 beside it (`reference_path(out)`) for the check; the caller removes it."""
    if gguf_type not in GGUF_TYPES:
        raise TuneForgeError(f"gguf_type {gguf_type!r}: use one of {', '.join(GGUF_TYPES)}")
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        view = converter_view(model_dir, Path(tmp) / "model", base_dir)
        metadata = Path(tmp) / "metadata.json"
        metadata.write_text(json.dumps({f"general.{k}": str(v) for k, v in (facts or {}).items()}), encoding="utf-8")
        if gguf_type in CONVERTED:
            return llamacpp.convert_model(view, out, gguf_type, metadata)
        f16 = llamacpp.convert_model(view, reference_path(out), "f16", metadata)
    return llamacpp.quantize(f16, out, gguf_type)


def reference_path(out: Path) -> Path:
    return out.with_name(out.name + ".f16")


def converter_view(model_dir: Path, view: Path, base_dir: Path | None = None) -> Path:
    """The model folder as llama.cpp's converter reads it, linked file by file, with three differences.

    GPT-2's config gets back the n_ctx that transformers 5 leaves out and the converter reads (and a
    vision-language model's text_config its class: backend/serving/gguf_vision.py).
    transformers 5 saves a byte-level BPE tokenizer as `TokenizersBackend`, and the converter reads a
    Phi-3 tokenizer as BPE only when it is called GPT2Tokenizer (else it looks for tokenizer.model);
    and SentencePiece architectures (Gemma, Llama 2, Phi-3) need the tokenizer.model that a
    transformers 5 save leaves out, which the base model's folder has."""
    view.mkdir(parents=True)
    for path in model_dir.iterdir():
        if path.is_file():
            (view / path.name).symlink_to(path.resolve())
    config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    if config.get("model_type") == "gpt2" and "n_ctx" not in config:  # transformers 5 no longer writes it
        (view / "config.json").unlink()
        (view / "config.json").write_text(json.dumps({**config, "n_ctx": config.get("n_positions", 1024)}))
    if "vision_config" in config and with_text_architecture(config) != config:
        (view / "config.json").unlink()
        (view / "config.json").write_text(json.dumps(with_text_architecture(config)))
    source = (base_dir / "tokenizer.model") if base_dir else None
    if source and source.exists() and not (view / "tokenizer.model").exists():
        (view / "tokenizer.model").symlink_to(source.resolve())
    config_file, tokenizer_file = view / "tokenizer_config.json", view / "tokenizer.json"
    if not config_file.exists() or not tokenizer_file.exists() or (view / "tokenizer.model").exists():
        return view
    config = json.loads(config_file.read_text(encoding="utf-8"))
    tokenizer = json.loads(tokenizer_file.read_text(encoding="utf-8"))
    byte_level = (tokenizer.get("decoder") or {}).get("type") == "ByteLevel"
    if config.get("tokenizer_class") == "TokenizersBackend" and byte_level:
        config["tokenizer_class"] = "GPT2Tokenizer"
        config_file.unlink()
        config_file.write_text(json.dumps(config, indent=2), encoding="utf-8")
    return view


def with_text_architecture(config: dict[str, Any]) -> dict[str, Any]:
    """The config with `text_config.architectures` set (llama.cpp's converter picks the language model's class
    from it); a config that has it, or no text_config, is returned as it is."""
    text = config.get("text_config")
    if not isinstance(text, dict) or text.get("architectures"):
        return config
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES

    causal = MODEL_FOR_CAUSAL_LM_MAPPING_NAMES.get(text.get("model_type", ""))
    return {**config, "text_config": {**text, "architectures": [causal]}} if causal else config


def probe_prompt(model_dir: Path) -> tuple[str, list[int]]:
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    text = tokenizer.apply_chat_template(PROBE, tokenize=False, add_generation_prompt=True)
    return text, tokenizer(text, add_special_tokens=False)["input_ids"]


def transformers_agree(model_dir: Path, ids: list[int], got: list[int]) -> int | None:
    """How many of llama.cpp's greedy tokens transformers' merged model also picks, fed the same context:
    its likeliest token, or one within float16 rounding of it (TIE of the largest logit), since near-ties
    are broken either way by a last bit. None for a model too large to run here."""
    import torch
    from transformers import AutoModelForCausalLM

    size = sum(p.stat().st_size for p in model_dir.glob("*.safetensors"))
    if size > COMPARE_MAX_BYTES or not got:
        return None if size > COMPARE_MAX_BYTES else 0
    if is_vision_folder(model_dir):  # its language model alone, as the text GGUF holds it
        model = load_vision_model(model_dir, dtype=torch.float32)
    else:
        model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    with torch.no_grad():
        logits = model(torch.tensor([ids + got])).logits[0, len(ids) - 1 : len(ids) - 1 + len(got)]
    best = logits.max(-1).values
    chosen = logits.gather(-1, torch.tensor(got).unsqueeze(-1)).squeeze(-1)
    return int((best - chosen <= TIE * logits.abs().max(-1).values).sum())


def agreeing(a: list[int], b: list[int]) -> int:
    """How many tokens the two continuations share before they first differ."""
    count = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        count += 1
    return count


def verify(
    model_dir: Path, gguf_file: Path, gguf_type: str, text_file: Path, f16_file: Path | None = None
) -> dict[str, Any]:
    """The file checked in llama.cpp against the merged model (see the module's doc), with its bound and verdict."""
    text, ids = probe_prompt(model_dir)
    with llamacpp.LlamaServer(gguf_file, ctx=512) as server:
        tokens_match = server.tokenize(text) == ids
        got = server.greedy(ids, PROBE_TOKENS)
    agree = transformers_agree(model_dir, ids, got)
    ppl = llamacpp.perplexity(gguf_file, text_file, PPL_CTX, PPL_CHUNKS)
    ppl_f16 = llamacpp.perplexity(f16_file, text_file, PPL_CTX, PPL_CHUNKS) if f16_file else ppl
    least_share, largest_ratio = BOUNDS[gguf_type]
    check: dict[str, Any] = {
        "agree": agree,
        "tokens": len(got),
        "tokens_match": tokens_match,
        "ppl": round(ppl, 4),
        "ppl_f16": round(ppl_f16, 4),
        "ppl_text": text_file.name,
        "size_bytes": gguf_file.stat().st_size,
        "bound": {"agree_share": least_share, "ppl_ratio": largest_ratio},
    }
    problems = []
    if not tokens_match:
        problems.append("llama.cpp splits the probe chat into other tokens than the model's tokenizer")
    if agree is not None and agree < least_share * len(got):
        problems.append(f"{agree} of {len(got)} greedy tokens agree with transformers' (bound {least_share:.0%})")
    if not ppl <= largest_ratio * ppl_f16:
        problems.append(f"perplexity {ppl:.3f} against f16's {ppl_f16:.3f} (bound x{largest_ratio})")
    check["passed"] = not problems
    check["problem"] = "; ".join(problems)
    return check


def perplexity_text(model_dir: Path, rows: list[dict], folder: Path) -> Path:
    """A text file for llama-perplexity: the run's held-out rows in its chat template when they are long
    enough to fill the windows, else the bundled general text."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    parts = []
    for row in rows:
        if row.get("messages"):
            parts.append(tokenizer.apply_chat_template(row["messages"], tokenize=False))
        elif row.get("text"):
            parts.append(str(row["text"]))
    text = "\n".join(parts)
    if len(tokenizer(text, add_special_tokens=False)["input_ids"]) >= PPL_CTX * PPL_CHUNKS + 8:
        target = folder / "held_out.txt"
        target.write_text(text, encoding="utf-8")
        return target
    return GENERAL_TEXT


def remove_reference(out: Path) -> None:
    path = reference_path(out)
    if path.exists():
        path.unlink()
