"""Where a dataset spec points: a bundled demo, a registered name, a file, or a hub dataset.

The registry is `<workspace>/datasets/dataset_info.json`, in LLaMA-Factory's schema
({name: {"file_name", "formatting", "columns"}}), so a team can share named datasets and
LLaMA-Factory users recognise it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from backend.errors import TuneForgeError
from backend.paths import ASSETS_DIR

REGISTRY_FILE = "dataset_info.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HUB_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


@dataclass
class DatasetSource:
    """A resolved spec: a local file, or a hub dataset name; plus registered format and columns."""

    name: str
    path: Path | None = None
    hub: str | None = None
    formatting: str = "auto"
    columns: dict[str, str] = field(default_factory=dict)


def demo_datasets() -> dict[str, Path]:
    """Bundled demo datasets by name (file stem)."""
    from backend.data.readers import SUPPORTED_SUFFIXES

    return {p.stem: p for p in sorted(ASSETS_DIR.iterdir()) if p.suffix in SUPPORTED_SUFFIXES}


def registry_dir(workspace: Path) -> Path:
    return Path(workspace) / "datasets"


def load_registry(workspace: Path) -> dict[str, dict]:
    path = registry_dir(workspace) / REGISTRY_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TuneForgeError(f"{path}: the dataset registry is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TuneForgeError(f"{path}: the dataset registry must be a JSON object of name: entry")
    return data


def register_dataset(
    workspace: Path, name: str, source: Path, formatting: str = "auto", columns: dict | None = None
) -> Path:
    """Copy a file into the registry folder and record it under a name (replacing an older entry)."""
    if not NAME_PATTERN.match(name or ""):
        raise TuneForgeError(f"dataset name {name!r}: use letters, digits, '_', '-' or '.', at most 64 characters")
    folder = registry_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"{name}{Path(source).suffix.lower()}"
    if Path(source).resolve() != target.resolve():
        shutil.copyfile(source, target)
    registry = load_registry(workspace)
    entry = {"file_name": target.name}
    if formatting != "auto":
        entry["formatting"] = formatting
    if columns:
        entry["columns"] = dict(columns)
    registry[name] = entry
    tmp = folder / f".{REGISTRY_FILE}.tmp"
    tmp.write_text(json.dumps(registry, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / REGISTRY_FILE)
    return target


def dataset_choices(workspace: Path | None) -> list[str]:
    names = list(demo_datasets())
    if workspace is not None:
        names += [n for n in load_registry(workspace) if n not in names]
    return names


def resolve(spec: str, workspace: Path | None) -> DatasetSource:
    spec = (spec or "").strip()
    if not spec:
        raise TuneForgeError("no dataset chosen: pick a demo, upload a file, or give a path")
    demos = demo_datasets()
    if spec in demos:
        return DatasetSource(name=spec, path=demos[spec])
    if workspace is not None:
        entry = load_registry(workspace).get(spec)
        if entry is not None:
            return _registered(spec, entry, workspace)
    path = Path(spec).expanduser()
    if path.exists():
        return DatasetSource(name=path.name, path=path)
    if HUB_PATTERN.match(spec):
        return DatasetSource(name=spec, hub=spec)
    known = ", ".join(dataset_choices(workspace)) or "none"
    raise TuneForgeError(f"dataset '{spec}' is neither a file, a registered name, nor a bundled demo (known: {known})")


def _registered(name: str, entry: dict, workspace: Path) -> DatasetSource:
    if not isinstance(entry, dict) or not isinstance(entry.get("file_name"), str):
        raise TuneForgeError(f"registered dataset '{name}' has no file_name")
    path = registry_dir(workspace) / entry["file_name"]
    if not path.exists():
        raise TuneForgeError(f"registered dataset '{name}': file {path} is missing")
    columns = entry.get("columns") or {}
    return DatasetSource(name=name, path=path, formatting=entry.get("formatting", "auto"), columns=dict(columns))


def hub_records(name: str):
    """A hub dataset's train split, for users who are online."""
    try:
        import datasets

        table = datasets.load_dataset(name, split="train")
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, gated: all one message to the user
        raise TuneForgeError(
            f"cannot load dataset '{name}' from the Hugging Face Hub ({str(exc).splitlines()[0]}); "
            "check the name and your connection, or use a local file"
        ) from None
    for i, record in enumerate(table, start=1):
        yield f"row {i}", record
