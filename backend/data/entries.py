"""What one dataset_info.json entry means, in LLaMA-Factory's schema, and whether we can train on it.

An entry names a file or folder (`file_name`), or a hub dataset (`hf_hub_url`, `ms_hub_url`,
`om_hub_url`, `script_url`, `cloud_file_name`), plus how to read it: `formatting` (alpaca or
sharegpt), `columns` (which column holds each part), `tags` (sharegpt role and content keys)
and `ranking`. The same entry drives listing (a short note next to its name) and resolving (a
DatasetSource, or one line saying why not), so the list never offers what training would refuse
without saying so.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError

MEDIA_COLUMNS = ("images", "videos", "audios")
# LLaMA-Factory reads hub entries before local ones, in this order; so do we.
OTHER_HUBS = {
    "ms_hub_url": "the ModelScope hub",
    "om_hub_url": "the Modelers hub",
    "script_url": "a dataset loading script",
    "cloud_file_name": "cloud storage (S3/GCS)",
}
TAG_DEFAULTS = {
    "role_tag": "from",
    "content_tag": "value",
    "user_tag": "human",
    "assistant_tag": "gpt",
    "observation_tag": "observation",
    "function_tag": "function_call",
    "system_tag": "system",
}


@dataclass
class DatasetSource:
    """A resolved spec: a local file or folder, or a hub dataset; plus how to read its records."""

    name: str
    path: Path | None = None
    hub: str | None = None
    hub_subset: str | None = None
    hub_split: str = "train"
    hub_folder: str | None = None  # a folder inside the hub repository (LLaMA-Factory's `folder`)
    formatting: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)
    tags: dict[str, str] = field(default_factory=dict)


def hub_offline() -> bool:
    """True when the person has told the Hugging Face libraries to stay offline."""
    return any(
        os.environ.get(v, "").lower() in ("1", "true", "yes", "on") for v in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    )


def data_kind(entry: dict[str, Any]) -> str | None:
    """'preference', 'kto', 'images' or 'multimodal' (video, audio) for data that needs more than text, else None."""
    columns = entry.get("columns") or {}
    if any(c in columns for c in MEDIA_COLUMNS if c != "images"):
        return "multimodal"
    if "images" in columns:
        return "images"
    if entry.get("ranking") or {"chosen", "rejected"} & set(columns):
        return "preference"
    if "kto_tag" in columns:
        return "kto"
    return None


def refusal(name: str, entry: dict[str, Any]) -> str | None:
    """Why this entry's data cannot be trained at all (whatever the machine), or None."""
    columns = entry.get("columns") or {}
    if data_kind(entry) == "multimodal":
        media = "/".join(c for c in MEDIA_COLUMNS if c in columns and c != "images")
        return f"dataset '{name}' has {media}: video and audio are not supported (TuneForge trains on text and images)"
    if entry.get("num_samples"):
        return f"dataset '{name}': num_samples is not supported yet; remove it and set max_samples instead"
    return None


def listing_note(name: str, entry: Any, folder: Path) -> str:
    """A few words shown beside the name in a dataset list; empty when the entry is usable as it is."""
    if not isinstance(entry, dict):
        return "invalid entry"
    kind = data_kind(entry)
    if kind in ("multimodal", "images"):
        return kind
    if refusal(name, entry):
        return "not supported"
    if entry.get("hf_hub_url"):
        return "hub, offline" if hub_offline() else "hub"
    if any(entry.get(key) for key in OTHER_HUBS):
        return "not local"
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name or not (folder / file_name).exists():
        return "file missing"
    # Which task trains it, so nobody picks preference pairs for sft.
    return {"preference": "preference: dpo, orpo, kto, rm", "kto": "task kto"}.get(kind or "", "")


def source_for(name: str, entry: Any, folder: Path) -> DatasetSource:
    """The source an entry describes, or a TuneForgeError with the one reason it cannot be used."""
    if not isinstance(entry, dict):
        raise TuneForgeError(f"{folder / 'dataset_info.json'}: entry '{name}' must be an object")
    reason = refusal(name, entry)
    if reason:
        raise TuneForgeError(reason)
    how = {
        "formatting": _formatting(name, entry),
        "columns": _str_dict(name, entry, "columns"),
        "tags": _str_dict(name, entry, "tags"),
    }
    if entry.get("hf_hub_url"):
        hub = entry["hf_hub_url"]
        if hub_offline():
            raise TuneForgeError(
                f"dataset '{name}' is on the Hugging Face Hub ({hub}) and this machine is offline; "
                f"download it into {folder} and give the entry a file_name"
            )
        where = {"hub_subset": entry.get("subset"), "hub_split": entry.get("split") or "train"}
        return DatasetSource(name=name, hub=hub, hub_folder=entry.get("folder"), **where, **how)
    for key, where in OTHER_HUBS.items():
        if entry.get(key):
            raise TuneForgeError(
                f"dataset '{name}' comes from {where} ({key}: {entry[key]}), which TuneForge cannot read; "
                f"save it as a file in {folder} and give the entry a file_name"
            )
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        raise TuneForgeError(f"dataset '{name}' has no file_name (nor a hub address)")
    path = folder / file_name
    if not path.exists():
        raise TuneForgeError(f"dataset '{name}': its file_name {file_name} is missing from {folder}")
    return DatasetSource(name=name, path=path, **how)


def _formatting(name: str, entry: dict[str, Any]) -> str:
    # No formatting means alpaca to LLaMA-Factory; "auto" detects alpaca from its columns just the same,
    # and still lets our own registry entries (which omit it) hold other formats.
    formatting = entry.get("formatting", "auto")
    if formatting not in ("auto", "alpaca", "sharegpt", "openai", "prompt_completion", "text", "classification"):
        raise TuneForgeError(f"dataset '{name}': formatting {formatting!r} is not alpaca or sharegpt")
    return formatting


def _str_dict(name: str, entry: dict[str, Any], key: str) -> dict[str, str]:
    value = entry.get(key) or {}
    if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
        raise TuneForgeError(f"dataset '{name}': '{key}' must map names to column names")
    if key == "tags":
        unknown = sorted(set(value) - set(TAG_DEFAULTS))
        if unknown:
            raise TuneForgeError(f"dataset '{name}': unknown tag {unknown[0]!r} (use {', '.join(TAG_DEFAULTS)})")
    return dict(value)
