"""Generated rows into a named dataset of the workspace's registry, with the recipe that made them.

`<workspace>/datasets/<name>.jsonl` holds the rows (each with its `source`), registered under <name> like any
dataset saved from the Dataset tab, so `dataset: <name>` trains on it; `<name>.recipe.yaml` beside it holds the
recipe (sources, settings, generator without its key), so `python -m backend.recipe --config <name>.recipe.yaml`
makes the set again.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from backend.data.registry import register_dataset, registry_dir
from backend.files import write_text_atomically
from backend.recipes.chunking import source_line
from backend.recipes.folder import CHUNKS_FILE, read_jsonl
from backend.recipes.quality import flag_rows, kept
from backend.recipes.settings import RecipeConfig

RECIPE_SUFFIX = ".recipe.yaml"
PRIVATE = ("unit", "chunk", "flags")  # the recipe's bookkeeping, not the dataset's


def review(config: RecipeConfig, rows: list[dict], chunks: dict[int, str]) -> list[dict]:
    """The rows with their flags (a list of names) under `flags`, for the table a person reviews."""
    flags = flag_rows(rows, chunks, config.grounding_min, config.near_threshold, config.min_chars, config.max_chars)
    return [{**row, "flags": row_flags} for row, row_flags in zip(rows, flags, strict=True)]


def save_recipe_rows(config: RecipeConfig, folder: Path, workspace: Path, rows: list[dict]) -> int:
    """The job's own save: duplicates dropped, every other row kept with its flags shown in the table."""
    chunks = {c["index"]: c["text"] for c in read_jsonl(folder / CHUNKS_FILE)}
    flags = flag_rows(rows, chunks, config.grounding_min, config.near_threshold, config.min_chars, config.max_chars)
    return save_dataset(workspace, config, kept(rows, flags))


def save_dataset(workspace: Path, config: RecipeConfig, rows: list[dict]) -> int:
    """Write rows as the named dataset (replacing an older one of that name) and its recipe file beside it."""
    clean_rows = [{k: v for k, v in row.items() if k not in PRIVATE} for row in rows]
    folder = registry_dir(workspace)
    folder.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=folder) as scratch:
        staged = Path(scratch) / f"{config.name}.jsonl"
        staged.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in clean_rows), encoding="utf-8")
        register_dataset(workspace, config.name, staged, tags=None)
    recipe = {**config.to_dict(), "output_dir": config.output_dir}
    write_text_atomically(folder / f"{config.name}{RECIPE_SUFFIX}", RecipeConfig(**recipe).to_yaml())
    return len(clean_rows)


def describe_source(row: dict) -> str:
    source = row.get("source")
    return source_line(source) if isinstance(source, dict) else str(source or "")
