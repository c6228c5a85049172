"""Where a dataset spec points: a bundled demo, a registered name, a file, or a hub dataset.

Names come from `dataset_info.json` registries in LLaMA-Factory's schema (see entries.py):
the `dataset_dir` folder a person points at (a LLaMA-Factory `data/` folder works as it is),
and the workspace's own `<workspace>/datasets/`, where the team saves named datasets.
"""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

from backend.data.entries import DatasetSource, listing_note, source_for
from backend.errors import TuneForgeError
from backend.paths import ASSETS_DIR

REGISTRY_FILE = "dataset_info.json"
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
HUB_PATTERN = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


def demo_datasets() -> dict[str, Path]:
    """Bundled demo datasets by name (file stem)."""
    from backend.data.readers import SUPPORTED_SUFFIXES

    return {p.stem: p for p in sorted(ASSETS_DIR.iterdir()) if p.suffix in SUPPORTED_SUFFIXES}


def registry_dir(workspace: Path) -> Path:
    return Path(workspace) / "datasets"


def load_registry(workspace: Path) -> dict[str, dict]:
    return read_registry(registry_dir(workspace))


def read_registry(folder: Path) -> dict[str, dict]:
    """The entries of folder/dataset_info.json; {} when the folder has none."""
    path = Path(folder) / REGISTRY_FILE
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TuneForgeError(f"{path}: the dataset registry is not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise TuneForgeError(f"{path}: the dataset registry must be a JSON object of name: entry")
    return data


def dataset_folder(dataset_dir: str) -> Path | None:
    """The dataset_dir option as a folder holding a registry; None when it is empty."""
    if not (dataset_dir or "").strip():
        return None
    folder = Path(dataset_dir.strip()).expanduser()
    if not folder.is_dir():
        raise TuneForgeError(f"dataset_dir {folder} is not a folder")
    if not (folder / REGISTRY_FILE).is_file():
        raise TuneForgeError(f"dataset_dir {folder} has no {REGISTRY_FILE}")
    return folder


def registries(workspace: Path | None, dataset_dir: str = "") -> list[tuple[Path, dict[str, dict]]]:
    """(folder, entries) in lookup order: the chosen dataset_dir wins over the workspace's own names."""
    found = []
    folder = dataset_folder(dataset_dir)
    if folder is not None:
        found.append((folder, read_registry(folder)))
    if workspace is not None:
        found.append((registry_dir(workspace), load_registry(workspace)))
    return found


def register_dataset(
    workspace: Path,
    name: str,
    source: Path,
    formatting: str = "auto",
    columns: dict | None = None,
    tags: dict | None = None,
) -> Path:
    """Copy a file into the registry folder and record it under a name (replacing an older entry)."""
    if not NAME_PATTERN.match(name or ""):
        raise TuneForgeError(f"dataset name {name!r}: use letters, digits, '_', '-' or '.', at most 64 characters")
    if not Path(source).is_file():
        raise TuneForgeError(f"{source}: only a single file can be saved as a named dataset")
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
    if tags:
        entry["tags"] = dict(tags)
    registry[name] = entry
    tmp = folder / f".{REGISTRY_FILE}.tmp"
    tmp.write_text(json.dumps(registry, indent=2, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, folder / REGISTRY_FILE)
    return target


def dataset_choices(workspace: Path | None, dataset_dir: str = "") -> list[str]:
    names = list(demo_datasets())
    for _folder, entries in registries(workspace, dataset_dir):
        names += [n for n in entries if n not in names]
    return names


def labelled_choices(workspace: Path | None, dataset_dir: str = "") -> list[tuple[str, str]]:
    """(label, name) for a picker: entries that cannot train here as they are say why in a word or two."""
    choices = {name: name for name in demo_datasets()}
    for folder, entries in registries(workspace, dataset_dir):
        for name, entry in entries.items():
            if name not in choices:
                note = listing_note(name, entry, folder)
                choices[name] = f"{name} ({note})" if note else name
    return [(label, name) for name, label in choices.items()]


def split_specs(spec: str) -> list[str]:
    """'identity,alpaca_en_demo' (LLaMA-Factory's way to mix datasets) as its names; a real path stays whole."""
    spec = (spec or "").strip()
    if "," not in spec or Path(spec).expanduser().exists():
        return [spec]
    return [part.strip() for part in spec.split(",") if part.strip()]


def resolve(spec: str, workspace: Path | None, dataset_dir: str = "") -> DatasetSource:
    spec = (spec or "").strip()
    if not spec:
        raise TuneForgeError("no dataset chosen: pick a demo, upload a file, or give a path")
    # The folder the person pointed at wins; the workspace's names come after the bundled demos, as before.
    for folder, entries in registries(None, dataset_dir):
        if spec in entries:
            return source_for(spec, entries[spec], folder)
    demos = demo_datasets()
    if spec in demos:
        return DatasetSource(name=spec, path=demos[spec])
    for folder, entries in registries(workspace):
        if spec in entries:
            return source_for(spec, entries[spec], folder)
    path = Path(spec).expanduser()
    if path.exists():
        return DatasetSource(name=path.name, path=path)
    if HUB_PATTERN.match(spec):
        return DatasetSource(name=spec, hub=spec)
    known = ", ".join(dataset_choices(workspace, dataset_dir)) or "none"
    if len(known) > 300:
        known = known[:300].rsplit(", ", 1)[0] + ", …"
    raise TuneForgeError(f"dataset '{spec}' is neither a file, a registered name, nor a bundled demo (known: {known})")


def resolve_all(spec: str, workspace: Path | None, dataset_dir: str = "") -> list[DatasetSource]:
    """Every dataset a spec names (one, or a comma-separated mix), each resolved or refused with its reason."""
    return [resolve(part, workspace, dataset_dir) for part in split_specs(spec)]


def hub_records(source: DatasetSource):
    """A hub dataset's split (train unless the registry names another), for users who are online."""
    try:
        import datasets

        table = datasets.load_dataset(source.hub, source.hub_subset, data_dir=source.hub_folder, split=source.hub_split)
    except Exception as exc:  # noqa: BLE001 - offline, unknown name, gated: all one message to the user
        raise TuneForgeError(
            f"cannot load dataset '{source.hub}' from the Hugging Face Hub ({str(exc).splitlines()[0]}); "
            "check the name and your connection, or use a local file"
        ) from None
    for i, record in enumerate(table, start=1):
        yield f"row {i}", record
