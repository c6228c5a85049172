"""A recipe's folder: the files the recipe job writes and the app reads (listed in backend.recipes.worker)."""

from __future__ import annotations

import json
from pathlib import Path

CONFIG_NAME = "recipe.yaml"
CHUNKS_FILE = "chunks.jsonl"
ROWS_FILE = "rows.jsonl"
FAILURES_FILE = "failures.jsonl"
SETTINGS_FILE = "settings.json"
LOG_NAME = "recipe.log"


def read_jsonl(path: Path) -> list[dict]:
    """The file's records; a half-written last line (a job killed mid-write) is skipped."""
    if not path.exists():
        return []
    records = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            records.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return records


def append_jsonl(path: Path, record: dict) -> None:
    """One write of one whole line, so a reader never sees half a row unless the job dies inside it."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(json.dumps(record, ensure_ascii=False) + "\n")
