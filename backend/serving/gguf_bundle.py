"""What an exported GGUF folder holds besides the model card: the file, its read-back check, and a Modelfile."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError
from backend.serving.gguf_export import verify_gguf, write_gguf
from backend.serving.modelfile import modelfile

CARD_OPTIONS = ("method", "task", "learning_rate", "num_train_epochs", "max_steps", "lora_rank", "seed")


def fill_gguf_folder(folder: Path, merged: Path, run_id: str, config: dict, gguf_type: str, say) -> dict[str, Any]:
    """Write <run>-<type>.gguf from the merged model, check it, add the Modelfile; the check's numbers.

    A file that does not reproduce the merged model within its type's bound is refused, not kept."""
    say(f"writing the {gguf_type} GGUF")
    gguf_file = write_gguf(merged, folder / f"{run_id}-{gguf_type}.gguf", gguf_type, gguf_facts(run_id, config))
    say("reading it back to compare with the merged model")
    check = {"file": gguf_file.name, **verify_gguf(merged, gguf_file, gguf_type)}
    if check.get("passed") is False:
        raise TuneForgeError(
            f"the {gguf_type} GGUF does not reproduce the merged model (relative logit difference "
            f"{check['relative_diff']}, next-token agreement {check['top1_agreement']}, tokens match: "
            f"{check['tokens_match']}); it was not kept"
        )
    tokenizer = json.loads((merged / "tokenizer_config.json").read_text(encoding="utf-8"))
    template = merged / "chat_template.jinja"
    chat_template = template.read_text(encoding="utf-8") if template.exists() else tokenizer.get("chat_template")
    text = modelfile(gguf_file.name, chat_template, tokenizer.get("eos_token"))
    (folder / "Modelfile").write_text(text, encoding="utf-8")
    (folder / "verification.json").write_text(json.dumps(check, indent=2), encoding="utf-8")
    return check


def gguf_facts(run_id: str, config: dict) -> dict[str, str]:
    """The model card's facts as GGUF metadata (general.*), so a runtime's model list says what the file is."""
    return {
        "name": run_id,
        "description": f"Fine-tuned with TuneForge from {config.get('model', 'default')} on "
        f"{config.get('dataset', '?')} ({config.get('method', '?')}, task {config.get('task', '?')})",
        "finetune": ", ".join(f"{key}={config[key]}" for key in CARD_OPTIONS if key in config),
    }


def gguf_card_lines(check: dict[str, Any]) -> list[str]:
    """The model card's lines on a GGUF export: how to run it, and how it compared with the merged model."""
    name, stem = check["file"], Path(check["file"]).stem
    lines = [
        "## Run it",
        "",
        f"- llama.cpp: `llama-cli -m {name} -cnv` or `llama-server -m {name}` (the chat template is in the file).",
        f"- Ollama: `ollama create {stem} -f Modelfile`, then `ollama run {stem}`.",
        "",
        "## Verified",
        "",
    ]
    if "skipped" in check:
        return [*lines, f"Not read back: {check['skipped']}."]
    bound = check["bound"]
    return [
        *lines,
        f"Read back with transformers and compared with the merged model on a fixed chat: the largest logit "
        f"difference is {check['max_logit_diff']} ({check['relative_diff']:.2%} of the largest logit; bound "
        f"{bound['relative_diff']:.0%}), the likeliest next token agrees at {check['top1_agreement']:.0%} of "
        f"positions (bound {bound['top1_agreement']:.0%}), and the file's tokenizer splits the chat alike.",
    ]
