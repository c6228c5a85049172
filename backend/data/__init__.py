"""Datasets: from a spec (demo, registered name, file, hub id) to clean train/validation examples.

The pipeline, shared by inspection and training so both see exactly the same data:
  resolve → read records (streamed) → map columns → detect format → convert each row
  → skip or refuse bad rows → scrub PII → deduplicate → cap at max_samples
  → split off validation (val_size or eval_dataset) → report/drop leakage.
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
    FORMATS,
    TASK_FORMATS,
    Example,
    RowError,
    apply_mapping,
    check_mapping,
    detect_format,
    required_columns,
    to_example,
)
from backend.data.readers import SUPPORTED_SUFFIXES, BadRow, iter_records
from backend.data.registry import DatasetSource, dataset_choices, demo_datasets, hub_records, register_dataset, resolve
from backend.errors import TuneForgeError

__all__ = [
    "SUPPORTED_SUFFIXES",
    "DataOptions",
    "ExampleReader",
    "Splits",
    "dataset_choices",
    "demo_datasets",
    "load_splits",
    "register_dataset",
    "split_indices",
]

MAPPING_OPTIONS = {
    "prompt_column": "prompt",
    "response_column": "response",
    "system_column": "system",
    "text_column": "text",
    "label_column": "label",
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
    val_size: float = 0.0
    seed: int = 42
    max_samples: int = 0
    workspace: Path | None = None

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
        )


class ExampleReader:
    """Iterate one dataset's examples; afterwards it reports format, columns, skips and PII counts."""

    def __init__(self, spec: str, options: DataOptions):
        self.source: DatasetSource = resolve(spec, options.workspace)
        self.options = options
        self.name = self.source.name if self.source.hub else Path(self.source.path).name
        self.mapping = {**self.source.columns, **options.mapping}
        requested = options.dataset_format if options.dataset_format != "auto" else self.source.formatting
        self.format = requested if requested in FORMATS else None
        self.columns: list[str] = []
        self.rows_read = 0
        self.skipped: list[BadRow] = []
        self.pii: Counter = Counter()
        self.first_records: list[dict[str, Any]] = []

    def _records(self) -> Iterator[tuple[str, dict | BadRow]]:
        if self.source.hub:
            return hub_records(self.source.hub)
        return iter_records(Path(self.source.path))

    def __iter__(self) -> Iterator[Example]:
        for where, record in self._records():
            self.rows_read += 1
            if isinstance(record, dict):
                if self.format is None or not self.columns:
                    self._start(record)
                if len(self.first_records) < 20:
                    self.first_records.append(record)
                try:
                    example = to_example(self.format, apply_mapping(record, self.mapping))
                except RowError as exc:
                    record = BadRow(where, str(exc))
                else:
                    yield scrub_example(example, self.pii) if self.options.scrub_pii else example
                    continue
            self._bad(record)
        if self.rows_read == 0:
            raise TuneForgeError(f"{self.name}: file has no rows")
        if self.rows_read == len(self.skipped):
            reasons = "; ".join(map(str, self.skipped[:REASONS_SHOWN]))
            raise TuneForgeError(f"{self.name}: no usable rows ({len(self.skipped)} bad: {reasons})")

    def _start(self, record: dict[str, Any]) -> None:
        """Columns, mapping and format come from the first good record."""
        self.columns = [str(c) for c in record]
        check_mapping(self.columns, self.mapping, self.name)
        mapped = list(apply_mapping(record, self.mapping))
        if self.format is None:
            self.format = detect_format(mapped, self.name)
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

    def _bad(self, bad: BadRow) -> None:
        if not self.options.skip_bad_rows:
            raise TuneForgeError(f"{self.name}: {bad} (turn on skip_bad_rows to skip such rows)")
        self.skipped.append(bad)


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
    reader = ExampleReader(options.dataset, options)
    examples = list(reader)
    readers = [reader]
    dropped = 0
    if options.dedup:
        examples, dropped = dedup(examples)
    if options.max_samples:
        examples = examples[: options.max_samples]
    if options.eval_dataset:
        eval_reader = ExampleReader(options.eval_dataset, options)
        validation = list(eval_reader)
        readers.append(eval_reader)
        if eval_reader.format != reader.format:
            raise TuneForgeError(
                f"{eval_reader.name} is {eval_reader.format} but {reader.name} is {reader.format}; use one format"
            )
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
