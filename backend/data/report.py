"""Inspection before training: counts, duplicates, cleaning and leakage, read in one streamed pass.

Only keys, a first-rows preview and a random sample are kept in memory, so a 500,000-row file
is inspected without holding its examples.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from backend.data import DataOptions, open_dataset, split_indices
from backend.data.cleaning import count_duplicates, exact_key, normalized_key, preview_text
from backend.data.messages import Example
from backend.data.placeholders import unfilled_note
from backend.data.prompts import reference_columns

SAMPLE_SIZE = 2000
PREVIEW_ROWS = 5
LEAKS_SHOWN = 5


@dataclass
class DatasetReport:
    name: str
    format: str
    columns: list[str]
    rows_read: int
    usable_rows: int
    preview: list[dict[str, Any]]
    skipped: list[str]
    skipped_count: int
    duplicates: int
    pii: dict[str, int]
    train_rows: int
    validation_rows: int
    leaked: int
    leaked_examples: list[str]
    sample: list[Example] = field(repr=False)
    first_examples: list[Example] = field(repr=False)
    placeholders: dict[str, int] = field(default_factory=dict)  # {{name}}/{{author}} seen in the data
    placeholder_values: dict[str, str] = field(default_factory=dict)
    images: int = 0  # over every usable row, as each counts its images' tokens
    image_rows: int = 0
    most_images: int = 0  # in one row

    def summary_lines(self) -> list[str]:
        lines = [f"Format: {self.format} · Rows: {self.usable_rows} usable of {self.rows_read} read"]
        lines.append(f"Columns: {', '.join(self.columns)}")
        if "preference" in self.format:
            lines.append("Each row: a prompt, its chosen answer (shown below as trained) and a rejected answer")
        if "prompts" in self.format:
            columns = ", ".join(reference_columns(self.sample)) or "none"
            lines.append(f"Rewards see: each prompt, and the reference columns {columns}")
        unfilled = unfilled_note(self.name, self.placeholders, self.placeholder_values)
        if unfilled:
            lines.append(unfilled)
        if self.images:
            lines.append(f"Images: {self.images} in {self.image_rows} rows, up to {self.most_images} in one row")
        if self.skipped_count:
            lines.append(f"Skipped {self.skipped_count} bad rows, e.g. " + "; ".join(self.skipped))
        lines.append(f"Exact duplicates: {self.duplicates}")
        if self.pii:
            lines.append("PII scrubbed: " + ", ".join(f"{n} {kind}" for kind, n in sorted(self.pii.items())))
        lines.append(f"Split: {self.train_rows} train · {self.validation_rows} validation")
        if self.leaked:
            lines.append(
                f"Leakage: {self.leaked} validation rows also occur in training, e.g. "
                + " | ".join(self.leaked_examples)
            )
        elif self.validation_rows:
            lines.append("Leakage: none between train and validation")
        return lines


def inspect_dataset(options: DataOptions, progress: Callable[[int], None] | None = None) -> DatasetReport:
    reader = open_dataset(options.dataset, options)
    exact: list[str] = []
    normalized: list[str] = []
    seen: set[str] = set()
    texts_of_repeats: dict[str, str] = {}  # a leak needs a repeated text, so only repeats are kept
    sample: list[Example] = []
    first: list[Example] = []
    rng = random.Random(options.seed)
    per_row: list[int] = []
    for i, example in enumerate(reader):
        if example.get("images"):
            per_row.append(len(example["images"]))
        key = normalized_key(example)
        if key in seen:
            texts_of_repeats.setdefault(key, preview_text(example))
        seen.add(key)
        exact.append(exact_key(example))
        normalized.append(key)
        if len(first) < PREVIEW_ROWS:
            first.append(example)
        if len(sample) < SAMPLE_SIZE:
            sample.append(example)
        elif (j := rng.randrange(i + 1)) < SAMPLE_SIZE:
            sample[j] = example
        if progress and i % 10_000 == 0:
            progress(i)
    duplicates = count_duplicates(exact)
    kept = _kept_indices(exact, options)
    train_keys, val_keys, val_texts = _split_keys(kept, normalized, options)
    train_set = set(train_keys)
    leaked_keys = [k for k in val_keys if k in train_set]
    leaked_texts = [val_texts.get(k) or texts_of_repeats.get(k, "") for k in leaked_keys[:LEAKS_SHOWN]]
    return DatasetReport(
        name=reader.name,
        format=reader.format,
        columns=reader.columns,
        rows_read=reader.rows_read,
        usable_rows=len(exact),
        preview=[{k: _cell(v) for k, v in r.items()} for r in reader.first_records[:PREVIEW_ROWS]],
        skipped=[str(b) for b in reader.skipped[:PREVIEW_ROWS]],
        skipped_count=len(reader.skipped),
        duplicates=duplicates,
        pii={k: n for k, n in reader.pii.items() if n},
        train_rows=len(train_keys),
        validation_rows=len(val_keys),
        leaked=len(leaked_keys),
        leaked_examples=leaked_texts,
        sample=sample,
        first_examples=first,
        placeholders=dict(reader.placeholders),
        placeholder_values=dict(options.placeholders),
        images=sum(per_row),
        image_rows=len(per_row),
        most_images=max(per_row, default=0),
    )


def _kept_indices(exact: list[str], options: DataOptions) -> list[int]:
    """The same selection training makes: dedup keeps first occurrences, then max_samples."""
    indices = list(range(len(exact)))
    if options.dedup:
        seen: set[str] = set()
        indices = [i for i in indices if not (exact[i] in seen or seen.add(exact[i]))]
    if options.max_samples:
        indices = indices[: options.max_samples]
    return indices


def _split_keys(kept: list[int], normalized: list[str], options: DataOptions):
    if options.eval_dataset:
        eval_reader = open_dataset(options.eval_dataset, options)
        val_texts: dict[str, str] = {}
        val_keys = []
        for example in eval_reader:
            key = normalized_key(example)
            val_keys.append(key)
            val_texts.setdefault(key, preview_text(example))
        return [normalized[i] for i in kept], val_keys, val_texts
    train_idx, val_idx = split_indices(len(kept), options.val_size, options.seed)
    return [normalized[kept[i]] for i in train_idx], [normalized[kept[i]] for i in val_idx], {}


def _cell(value: Any) -> Any:
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value
