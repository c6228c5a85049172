"""What an exported GGUF folder holds besides the model card: the file, its check in llama.cpp, and a Modelfile.

Two kinds: the merged model as one GGUF of a chosen type (`gguf`), and the adapter alone as a GGUF
LoRA (`gguf_adapter`) with a Modelfile that runs it on the base model's GGUF (FROM the base, ADAPTER
the LoRA), the base converted once into the model cache and shared by every adapter trained on it.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from backend.config import options_where
from backend.errors import TuneForgeError
from backend.models.vision import is_vision_folder
from backend.serving import llamacpp
from backend.serving.gguf_export import (
    GENERAL_TEXT,
    PROBE_TOKENS,
    perplexity_text,
    probe_prompt,
    reference_path,
    transformers_agree,
    verify,
    write_gguf,
)
from backend.serving.gguf_vision import mmproj_name, verify_mmproj, vision_card_lines, write_mmproj
from backend.serving.modelfile import modelfile

VERIFICATION_FILE = "verification.json"


def fill_gguf_folder(
    folder: Path,
    merged: Path,
    run_id: str,
    config: dict,
    gguf_type: str,
    say,
    rows: list[dict] | None = None,
    base_dir: Path | None = None,
) -> dict[str, Any]:
    """Write <run>-<type>.gguf from the merged model, check it in llama.cpp, add the Modelfile; the check.

    rows: the run's held-out rows, for perplexity. A file outside its type's bound is refused, not kept."""
    out = folder / f"{run_id}-{gguf_type}.gguf"
    say(f"converting to a {gguf_type} GGUF with llama.cpp")
    try:
        write_gguf(merged, out, gguf_type, gguf_facts(run_id, config), base_dir)
        say("checking the file in llama.cpp: greedy tokens and perplexity")
        with tempfile.TemporaryDirectory() as tmp:
            text = perplexity_text(merged, rows or [], Path(tmp))
            reference = reference_path(out)
            check = verify(merged, out, gguf_type, text, reference if reference.exists() else None)
    finally:
        reference_path(out).unlink(missing_ok=True)
    check = {"file": out.name, "type": gguf_type, **check}
    if not check["passed"]:
        raise TuneForgeError(f"the {gguf_type} GGUF was not kept: {check['problem']}")
    if is_vision_folder(merged):
        say("converting the image encoder to llama.cpp's mmproj file, and checking the pair in llama-server")
        mmproj = write_mmproj(merged, folder / mmproj_name(run_id), gguf_facts(run_id, config))
        check["mmproj"] = verify_mmproj(out, mmproj)
    text_modelfile = modelfile(out.name, *_template(merged), mmproj=(check.get("mmproj") or {}).get("file"))
    (folder / "Modelfile").write_text(text_modelfile, encoding="utf-8")
    (folder / VERIFICATION_FILE).write_text(json.dumps(check, indent=2), encoding="utf-8")
    return check


def fill_adapter_folder(
    folder: Path, run_dir: Path, merged: Path, base_dir: Path, run_id: str, base_gguf: Path, say
) -> dict[str, Any]:
    """<run>-lora-f16.gguf (llama.cpp's LoRA converter), checked on base_gguf in llama.cpp against the merged
    model in transformers, and a Modelfile FROM the base GGUF with the ADAPTER."""
    out = folder / f"{run_id}-lora-f16.gguf"
    say("converting the adapter to a GGUF LoRA with llama.cpp")
    llamacpp.convert_adapter(run_dir, base_dir, out)
    say("checking base + adapter in llama.cpp against the merged model")
    text, ids = probe_prompt(merged)
    with llamacpp.LlamaServer(base_gguf, lora=[out], ctx=512) as server:
        tokens_match = server.tokenize(text) == ids
        got = server.greedy(ids, PROBE_TOKENS)
    agree = transformers_agree(merged, ids, got)
    check: dict[str, Any] = {
        "file": out.name,
        "base_gguf": str(base_gguf),
        "agree": agree,
        "tokens": len(got),
        "tokens_match": tokens_match,
        "size_bytes": out.stat().st_size,
    }
    if not tokens_match or (agree is not None and agree < len(got) / 2):
        raise TuneForgeError(
            f"the GGUF LoRA was not kept: on its base in llama.cpp {agree} of {len(got)} greedy tokens agree "
            f"with the merged model's in transformers (bound 50%), tokens match: {tokens_match}"
        )
    check["passed"] = True
    text_modelfile = modelfile(out.name, *_template(merged), base=str(base_gguf))
    (folder / "Modelfile").write_text(text_modelfile, encoding="utf-8")
    (folder / VERIFICATION_FILE).write_text(json.dumps(check, indent=2), encoding="utf-8")
    return check


def base_gguf(base_dir: Path, cache: Path, say) -> Path:
    """The base model as an f16 GGUF, converted once into `cache` (shared by every adapter of that base)."""
    from filelock import FileLock

    cache.mkdir(parents=True, exist_ok=True)
    target = cache / f"{base_dir.name}-f16.gguf"
    with FileLock(str(target) + ".lock"):
        if not target.exists():
            say(f"converting the base model {base_dir.name} to an f16 GGUF (once)")
            partial = target.with_suffix(".partial")
            write_gguf(base_dir, partial, "f16", {"name": base_dir.name}, base_dir)
            os.replace(partial, target)
    return target


def _template(merged: Path) -> tuple[str | None, str | None]:
    tokenizer = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = merged / "chat_template.jinja"
    chat_template = template.read_text(encoding="utf-8") if template.exists() else tokenizer.get("chat_template")
    return chat_template, tokenizer.get("eos_token")


def gguf_facts(run_id: str, config: dict) -> dict[str, str]:
    """The model card's facts as GGUF metadata (general.*), so a runtime's model list says what the file is."""
    return {
        "name": run_id,
        "description": f"Fine-tuned with TuneForge from {config.get('model', 'default')} on "
        f"{config.get('dataset', '?')} ({config.get('method', '?')}, task {config.get('task', '?')})",
        "finetune": ", ".join(f"{key}={config[key]}" for key in options_where("card") if key in config),
    }


def gguf_card_lines(check: dict[str, Any]) -> list[str]:
    """The model card's lines on a GGUF export: how to run it, and how it compared with the merged model."""
    name, stem = check["file"], Path(check["file"]).stem
    if "base_gguf" in check:
        base = check["base_gguf"]
        run = [
            f"- llama.cpp: `llama-server -m {base} --lora {name}` (the base model's GGUF, with this LoRA).",
            f"- Ollama: `ollama create {stem} -f Modelfile` (FROM the base GGUF, ADAPTER this file), then "
            f"`ollama run {stem}`.",
        ]
    else:
        run = [
            f"- llama.cpp: `llama-cli -m {name} -cnv` or `llama-server -m {name}` (the chat template is in the file).",
            f"- Ollama: `ollama create {stem} -f Modelfile`, then `ollama run {stem}`.",
        ]
    lines = ["## Run it", "", *run, "", "## Verified in llama.cpp", ""]
    agree = (
        f"of its {check['tokens']} greedy tokens continuing a fixed chat, the merged model in transformers "
        f"also picks {check['agree']} (fed the same context; ties within float16 rounding count)"
        if check.get("agree") is not None
        else "the model is too large to run in transformers here, so no greedy comparison was made"
    )
    lines.append(f"llama.cpp loaded the file: {agree}, and its tokenizer splits the chat "
                 f"{'alike' if check['tokens_match'] else 'differently'}.")  # fmt: skip
    if "ppl" in check:
        source = "the run's held-out rows" if check.get("ppl_text") == "held_out.txt" else GENERAL_TEXT.name
        lines.append(
            f"Perplexity in llama.cpp on {source}: {check['ppl']:.3f} (f16: {check['ppl_f16']:.3f}; bound "
            f"x{check['bound']['ppl_ratio']})."
        )
    if "mmproj" in check:
        lines += ["", *vision_card_lines(name, check["mmproj"])]
    return lines
