"""Datasets: from a spec (demo, registered name, file, hub id) to clean train/validation examples.

The pipeline, shared by inspection and training so both see exactly the same data:
  resolve → read records (streamed) → map columns → detect format → convert each row
  → skip or refuse bad rows → fill {{name}}/{{author}} → scrub PII → deduplicate
  → cap at max_samples → split off validation (val_size or eval_dataset) → report/drop leakage.
A spec may list several datasets ("identity,alpaca_en_demo"); they are read one after another.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.data.cleaning import dedup, leaked, scrub_example
from backend.data.formats import (
    CHAT_FORMATS,
    FORMATS,
    TASK_FORMATS,
    apply_mapping,
    check_mapping,
    detect_format,
    required_columns,
    to_example,
)
from backend.data.images import attach_images, lift_content_parts
from backend.data.messages import Example
from backend.data.placeholders import fill_placeholders, unfilled_note
from backend.data.readers import SUPPORTED_SUFFIXES, BadRow, RowError, iter_folder_records, iter_records
from backend.data.registry import (
    DatasetSource,
    dataset_choices,
    demo_datasets,
    hub_records,
    labelled_choices,
    register_dataset,
    resolve,
    split_specs,
)
from backend.errors import TuneForgeError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DataOptions",
    "ExampleReader",
    "Splits",
    "dataset_choices",
    "demo_datasets",
    "labelled_choices",
    "load_splits",
    "open_dataset",
    "register_dataset",
    "split_indices",
]

MAPPING_OPTIONS = {
    "prompt_column": "prompt",
    "response_column": "response",
    "system_column": "system",
    "text_column": "text",
    "label_column": "label",
    "chosen_column": "chosen",
    "rejected_column": "rejected",
}
REASONS_SHOWN = 5


@dataclass
class DataOptions:
    """The data-related training options (a view of TrainConfig)."""

    dataset: str
    task: str = "sft"
    eval_dataset: str = ""
    dataset_format: str = "auto"
    mapping: dict[str, str] = field(default_factory=dict)
    skip_bad_rows: bool = False
    scrub_pii: bool = False
    dedup: bool = False
    drop_leaked: bool = False
    val_size: float = 0.1
    seed: int = 42
    max_samples: int = 0
    workspace: Path | None = None
    dataset_dir: str = ""
    placeholders: dict[str, str] = field(default_factory=dict)  # {{name}}/{{author}} → value

    @classmethod
    def from_config(cls, config, workspace: Path | None = None) -> DataOptions:
        mapping = {role: getattr(config, opt) for opt, role in MAPPING_OPTIONS.items() if getattr(config, opt)}
        return cls(
            dataset=config.dataset,
            task=config.task,
            eval_dataset=config.eval_dataset,
            dataset_format=config.dataset_format,
            mapping=mapping,
            skip_bad_rows=config.skip_bad_rows,
            scrub_pii=config.scrub_pii,
            dedup=config.dedup,
            drop_leaked=config.drop_leaked,
            val_size=config.val_size,
            seed=config.seed,
            max_samples=config.max_samples,
            workspace=workspace,
            dataset_dir=config.dataset_dir,
            placeholders={"name": config.identity_name, "author": config.identity_author},
        )


class ExampleReader:
    """Iterate one dataset's examples; afterwards it reports format, columns, skips, PII and placeholders."""

    def __init__(self, spec: str, options: DataOptions):
        self.source: DatasetSource = resolve(spec, options.workspace, options.dataset_dir)
        self.options = options
        self.name = self.source.name if self.source.hub else Path(self.source.path).name
        self.mapping = {**registry_mapping(self.source.columns, options.task), **options.mapping}
        requested = options.dataset_format if options.dataset_format != "auto" else self.source.formatting
        self.format = requested if requested in FORMATS else None
        self.columns: list[str] = []
        self.rows_read = 0
        self.skipped: list[BadRow] = []
        self.pii: Counter = Counter()
        self.placeholders: Counter = Counter()  # {{name}}/{{author}} seen
        self.first_records: list[dict[str, Any]] = []

    @property
    def parts(self) -> list[ExampleReader]:
        return [self]

    @property
    def _folder(self) -> Path | None:
        """Where a row's image paths start: the data file's folder (or the data folder itself)."""
        if self.source.hub:
            return None
        path = Path(self.source.path)
        return path if path.is_dir() else path.parent

    def _records(self) -> Iterator[tuple[str, dict | BadRow]]:
        if self.source.hub:
            return hub_records(self.source)
        path = Path(self.source.path)
        return iter_folder_records(path) if path.is_dir() else iter_records(path)

    def __iter__(self) -> Iterator[Example]:
        for where, record in self._records():
            self.rows_read += 1
            if isinstance(record, dict):
                if self.format is None or not self.columns:
                    self._start(record)
                if len(self.first_records) < 20:
                    self.first_records.append(record)
                try:
                    row = lift_content_parts(apply_mapping(record, self.mapping))
                    example = attach_images(to_example(self.format, row, self.source.tags), row, self._folder)
                except RowError as exc:
                    record = BadRow(where, str(exc))
                else:
                    yield self._clean(example)
                    continue
            self._bad(record)
        if self.rows_read == 0:
            raise TuneForgeError(f"{self.name}: file has no rows")
        if self.rows_read == len(self.skipped):
            reasons = "; ".join(map(str, self.skipped[:REASONS_SHOWN]))
            raise TuneForgeError(f"{self.name}: no usable rows ({len(self.skipped)} bad: {reasons})")

    def _clean(self, example: Example) -> Example:
        example = fill_placeholders(example, self.options.placeholders, self.placeholders)
        return scrub_example(example, self.pii) if self.options.scrub_pii else example

    def _start(self, record: dict[str, Any]) -> None:
        """Columns, mapping and format come from the first good record."""
        self.columns = [str(c) for c in record]
        check_mapping(self.columns, self.mapping, self.name)
        mapped = list(apply_mapping(record, self.mapping))
        if self.format is None or self.format in CHAT_FORMATS and self._judged(mapped):
            # A registry's "sharegpt" says how turns are written; chosen/rejected or a kto label say what they mean.
            self.format = detect_format(mapped, self.name, self.options.task)
        for column in required_columns(self.format):
            if column not in mapped:
                raise TuneForgeError(
                    f"{self.name}: column '{column}' not found for format {self.format}; "
                    f"columns are: {', '.join(self.columns)}"
                )
        allowed = TASK_FORMATS[self.options.task]
        if self.format not in allowed:
            raise TuneForgeError(
                f"{self.name}: format {self.format} does not fit task {self.options.task} "
                f"(it needs {' or '.join(allowed)}); change the task or the dataset"
            )

    def _judged(self, columns: list[str]) -> bool:
        keys = set(columns)
        task = self.options.task
        return {"chosen", "rejected"} <= keys or task == "kto" and "label" in keys or task == "grpo"

    def _bad(self, bad: BadRow) -> None:
        if not self.options.skip_bad_rows:
            raise TuneForgeError(f"{self.name}: {bad} (turn on skip_bad_rows to skip such rows)")
        self.skipped.append(bad)


class DatasetMix:
    """Several datasets read one after another, as LLaMA-Factory concatenates `dataset: a,b` by default."""

    def __init__(self, specs: list[str], options: DataOptions):
        self.parts = [ExampleReader(spec, options) for spec in specs]

    def __iter__(self) -> Iterator[Example]:
        for part in self.parts:
            yield from part

    @property
    def name(self) -> str:
        return " + ".join(p.name for p in self.parts)

    @property
    def format(self) -> str:
        return " + ".join(dict.fromkeys(p.format for p in self.parts))

    @property
    def columns(self) -> list[str]:
        return list(dict.fromkeys(c for p in self.parts for c in p.columns))

    @property
    def rows_read(self) -> int:
        return sum(p.rows_read for p in self.parts)

    @property
    def skipped(self) -> list[BadRow]:
        return [BadRow(f"{p.name}: {b.where}", b.reason) for p in self.parts for b in p.skipped]

    @property
    def pii(self) -> Counter:
        return sum((p.pii for p in self.parts), Counter())

    @property
    def placeholders(self) -> Counter:
        return sum((p.placeholders for p in self.parts), Counter())

    @property
    def first_records(self) -> list[dict[str, Any]]:
        return self.parts[0].first_records


def open_dataset(spec: str, options: DataOptions) -> ExampleReader | DatasetMix:
    """A reader for one dataset, or for a comma-separated list of them."""
    specs = split_specs(spec)
    return ExampleReader(specs[0], options) if len(specs) == 1 else DatasetMix(specs, options)


def registry_mapping(columns: dict[str, str], task: str) -> dict[str, str]:
    """A registry entry's columns as our mapping. For pt, LLaMA-Factory reads the text from the prompt column."""
    if task == "pt" and "prompt" in columns and "text" not in columns:
        columns = {("text" if role == "prompt" else role): column for role, column in columns.items()}
    return dict(columns)


def split_indices(n: int, val_size: float, seed: int) -> tuple[list[int], list[int]]:
    """(train, validation) indices: val_size < 1 is a share, >= 1 a row count."""
    order = list(range(n))
    random.Random(seed).shuffle(order)
    n_val = int(val_size) if val_size >= 1 else int(round(n * val_size))
    if val_size and n_val >= n:
        raise TuneForgeError(f"val_size={val_size} leaves no training rows out of {n}")
    return order[n_val:], order[:n_val]


@dataclass
class Splits:
    train: list[Example]
    validation: list[Example]
    format: str
    readers: list[ExampleReader]
    duplicates_dropped: int = 0
    leaked: list[int] = field(default_factory=list)  # validation indices also in train
    leaked_dropped: int = 0

    def summary(self) -> list[str]:
        """Lines for train.log and the UI: what was skipped, cleaned and dropped."""
        lines = []
        for reader in self.readers:
            unfilled = unfilled_note(reader.name, reader.placeholders, reader.options.placeholders)
            if unfilled:
                lines.append(unfilled)
            if reader.skipped:
                reasons = "; ".join(map(str, reader.skipped[:REASONS_SHOWN]))
                lines.append(f"{reader.name}: skipped {len(reader.skipped)} bad rows ({reasons})")
            if reader.pii:
                counts = ", ".join(f"{n} {kind}" for kind, n in sorted(reader.pii.items()) if n)
                lines.append(f"{reader.name}: scrubbed PII: {counts}")
        if self.duplicates_dropped:
            lines.append(f"dropped {self.duplicates_dropped} duplicate rows")
        if self.leaked:
            action = "dropped from validation" if self.leaked_dropped else "kept (turn on drop_leaked to drop them)"
            lines.append(f"{len(self.leaked)} validation rows also occur in training: {action}")
        return lines


def load_splits(options: DataOptions) -> Splits:
    """Everything training needs, cleaned and split, with the same rules inspection uses."""
    reader = open_dataset(options.dataset, options)
    examples = list(reader)
    readers = list(reader.parts)
    dropped = 0
    if options.dedup:
        examples, dropped = dedup(examples)
    if options.max_samples:
        examples = examples[: options.max_samples]
    if options.eval_dataset:
        # Every reader already checked its format against the task, so train and validation examples match.
        eval_reader = open_dataset(options.eval_dataset, options)
        validation = list(eval_reader)
        readers += eval_reader.parts
        train = examples
    else:
        train_idx, val_idx = split_indices(len(examples), options.val_size, options.seed)
        train, validation = [examples[i] for i in train_idx], [examples[i] for i in val_idx]
    splits = Splits(train=train, validation=validation, format=reader.format, readers=readers)
    splits.duplicates_dropped = dropped
    splits.leaked = leaked(train, validation)
    if options.drop_leaked and splits.leaked:
        gone = set(splits.leaked)
        splits.validation = [e for i, e in enumerate(validation) if i not in gone]
        splits.leaked_dropped = len(gone)
    return splits
