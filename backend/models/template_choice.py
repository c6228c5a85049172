"""Which chat template a model trains with: its own, or the named fallback (backend.templates).

The Model tab asks before a run, from the model's files alone (no tokenizer is loaded): a
tokenizer_config.json with a `chat_template`, or a chat_template.jinja beside it (where
transformers 5 saves it). A job records what it actually used, in its events and as a comment
line in config.yaml, and saves the template with the tokenizer, which chat and export load.
"""

from __future__ import annotations

import json
from pathlib import Path

from backend.errors import TuneForgeError
from backend.files import write_text_atomically
from backend.models.checks import gguf_metadata
from backend.models.sources import DEFAULT_MODEL_NAME, resolve_model
from backend.paths import model_cache_dir
from backend.templates import OWN_TEMPLATE

TEMPLATE_FILES = ("chat_template.jinja", "chat_template.json")
# config.yaml is read back as options (resume, clone, evaluate), which refuse an unknown key: so a comment.
RECORD_PREFIX = "# chat_template: "


def describe_template(used: str | None, fallback: str) -> str:
    """One line for people: the model's own template, or the fallback it gets."""
    if used == OWN_TEMPLATE:
        return "the model's own chat template"
    if used is None:
        return f"its own chat template if it has one, else the {fallback} fallback (its files are not here to read)"
    return f"the {used} fallback (the model has no chat template of its own)"


def model_template(spec: str, fallback: str, task: str = "sft") -> str | None:
    """OWN_TEMPLATE or the fallback's name for a model spec; None where its files cannot be read here."""
    spec = (spec or "default").strip()
    if spec == "default" and not (model_cache_dir() / DEFAULT_MODEL_NAME).is_dir():
        return OWN_TEMPLATE  # the embedded SmolLM2-Instruct, before its first conversion (which takes ~30 s)
    gguf = Path(spec).expanduser()
    if gguf.suffix.lower() == ".gguf" and gguf.is_file():  # read in place: resolving it would convert it
        return OWN_TEMPLATE if gguf_has_template(gguf) else fallback
    folder = _local_folder(resolve_model(spec, progress=lambda _message: None, task=task))
    if folder is None:
        return None
    return OWN_TEMPLATE if has_own_template(folder) else fallback


def has_own_template(folder: Path) -> bool:
    if any((folder / name).is_file() for name in TEMPLATE_FILES):
        return True
    if any((folder / "additional_chat_templates").glob("*.jinja")):
        return True
    try:
        config = json.loads((folder / "tokenizer_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(isinstance(config, dict) and config.get("chat_template"))


def gguf_has_template(path: Path) -> bool:
    """Whether a GGUF file's metadata holds tokenizer.chat_template (transformers gives it to the tokenizer).

    Read by the one GGUF header reader (backend.models.checks.gguf_metadata), which skips values it does not
    need: gguf's GGUFReader parses every value first, the vocabulary included, which takes seconds.
    """
    try:
        return "tokenizer.chat_template" in gguf_metadata(path)
    except TuneForgeError:
        return False


def _local_folder(resolved: str) -> Path | None:
    """The folder holding a model's tokenizer files: itself, or a hub id's copy in the local cache."""
    if Path(resolved).is_dir():
        return Path(resolved)
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(resolved, local_files_only=True))
    except Exception:  # noqa: BLE001 - not downloaded, or not a hub id at all: nothing to read either way
        return None


def record_in_config(config_path: Path, used: str, fallback: str) -> None:
    """Add (or replace) the config.yaml line saying which template the run used, atomically."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except FileNotFoundError:  # a speed trial trains without a run's config.yaml; its events keep the record
        return
    lines = [line for line in text.splitlines() if not line.startswith(RECORD_PREFIX)]
    lines.append(f"{RECORD_PREFIX}{used}  # {describe_template(used, fallback)}")
    write_text_atomically(config_path, "\n".join(lines) + "\n")


def recorded_template(config_path: Path) -> str | None:
    """The template a run's config.yaml says it used: OWN_TEMPLATE or a fallback's name; None if unrecorded."""
    try:
        text = config_path.read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(RECORD_PREFIX):
            return line.removeprefix(RECORD_PREFIX).split()[0]
    return None
