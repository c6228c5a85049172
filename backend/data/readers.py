"""Reading dataset files into records, streamed, with every problem located by line or row.

Supported: CSV, TSV, JSON (a list of records, a {column: [values]} table, or one key holding
a list), JSONL, Parquet and plain .txt (one document per blank-line-separated paragraph).
Text is UTF-8 with or without a BOM, or UTF-16 with a BOM; anything else is refused with the
line and the offending byte.
"""

from __future__ import annotations

import codecs
import csv
import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".tsv", ".parquet", ".txt")
csv.field_size_limit(2**31 - 1)  # long documents in one cell are legitimate


@dataclass
class BadRow:
    """A record that could not be read; kept so skip_bad_rows can report it."""

    where: str
    reason: str

    def __str__(self) -> str:
        return f"{self.where}: {self.reason}"


class RowError(ValueError):
    """One record's problem, found while converting it; the caller adds where it is and decides to skip or refuse."""


Record = dict[str, Any]


def check_readable(path: Path) -> None:
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TuneForgeError(f"{path.name}: unsupported file type '{suffix}' (use {', '.join(SUPPORTED_SUFFIXES)})")
    if not path.is_file():
        raise TuneForgeError(f"{path}: file not found")
    if path.stat().st_size == 0:
        raise TuneForgeError(f"{path.name}: file is empty")


def iter_records(path: Path) -> Iterator[tuple[str, Record | BadRow]]:
    """(location, record) pairs in file order; a malformed record comes as a BadRow.

    File-level problems (not text, bad encoding, a JSON document that does not parse) raise,
    because no row of such a file can be trusted.
    """
    check_readable(path)
    suffix = path.suffix.lower()
    if suffix == ".parquet":
        yield from _parquet(path)
        return
    text_stream = _open_text(path)
    if suffix == ".jsonl":
        yield from _jsonl(text_stream)
    elif suffix in (".csv", ".tsv"):
        yield from _delimited(text_stream, "\t" if suffix == ".tsv" else ",", path.name)
    elif suffix == ".txt":
        yield from _paragraphs(text_stream)
    else:
        yield from _json(text_stream.read(), path.name)


def iter_folder_records(folder: Path) -> Iterator[tuple[str, Record | BadRow]]:
    """Every dataset file in a folder, in name order, as one dataset (LLaMA-Factory's folder file_name)."""
    files = sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in SUPPORTED_SUFFIXES)
    if not files:
        raise TuneForgeError(f"{folder}: the folder holds no dataset files ({', '.join(SUPPORTED_SUFFIXES)})")
    for path in files:
        for where, record in iter_records(path):
            located = f"{path.name}: {where}"
            yield located, BadRow(located, record.reason) if isinstance(record, BadRow) else record


def _open_text(path: Path) -> _LocatedDecoder:
    with open(path, "rb") as f:
        head = f.read(65536)
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        encoding = "utf-16"
    elif b"\x00" in head:
        raise TuneForgeError(f"{path.name}: not a text file (it contains NUL bytes)")
    else:
        encoding = "utf-8-sig"
    return _LocatedDecoder(path, encoding)


class _LocatedDecoder:
    """Line-by-line decoding that names the line and byte of an encoding error."""

    def __init__(self, path: Path, encoding: str):
        self.path, self.encoding = path, encoding

    def __iter__(self) -> Iterator[str]:
        with open(self.path, "rb") as f:
            if self.encoding == "utf-16":
                # UTF-16 lines cannot be split on b"\n"; such files are small in practice.
                yield from self._decode_whole(f.read()).splitlines(keepends=True)
                return
            for lineno, raw in enumerate(f, start=1):
                yield self._decode_line(raw, lineno)

    def read(self, size: int = -1) -> str:
        return "".join(self)

    def _decode_line(self, raw: bytes, lineno: int) -> str:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TuneForgeError(
                f"{self.path.name}: line {lineno}: not valid UTF-8 (byte 0x{raw[exc.start]:02x} at column "
                f"{exc.start + 1}); save the file as UTF-8"
            ) from None
        return text.removeprefix("\ufeff") if lineno == 1 else text

    def _decode_whole(self, raw: bytes) -> str:
        try:
            return raw.decode(self.encoding)
        except UnicodeDecodeError as exc:
            line = raw[: exc.start].count(b"\n\x00") + 1
            raise TuneForgeError(f"{self.path.name}: line {line}: not valid UTF-16 ({exc.reason})") from None


# A \\uD800-\\uDFFF escape without its pair decodes to a lone surrogate, which no UTF-8 text (and no
# tokenizer) can hold; found here, it is refused with its line rather than failing later without one.
LONE_SURROGATE = re.compile(
    r"\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F][0-9a-fA-F]{2})"
    r"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2}"
)


def _loads(text: str):
    """json.loads, with the two ways valid-looking JSON still fails later turned into JSONDecodeError."""
    if "\\u" in text and (lone := LONE_SURROGATE.search(text)):
        raise json.JSONDecodeError("a \\u escape is half of a surrogate pair, not a character", text, lone.start())
    try:
        return json.loads(text)
    except RecursionError:
        raise json.JSONDecodeError("nested too deeply", text, 0) from None


def _jsonl(lines: Iterator[str]) -> Iterator[tuple[str, Record | BadRow]]:
    for lineno, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {lineno}"
        try:
            row = _loads(line.rstrip("\r\n"))
        except json.JSONDecodeError as exc:
            yield where, BadRow(where, f"invalid JSON ({exc.msg})")
            continue
        yield where, row if isinstance(row, dict) else BadRow(where, f"expected an object, got {type(row).__name__}")


def _json(text: str, name: str) -> Iterator[tuple[str, Record | BadRow]]:
    try:
        data = _loads(text)
    except json.JSONDecodeError as exc:
        raise TuneForgeError(f"{name}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if isinstance(data, dict):
        data = _records_from_object(data, name)
    if not isinstance(data, list):
        raise TuneForgeError(f"{name}: expected a JSON list of records, got {type(data).__name__}")
    for i, row in enumerate(data, start=1):
        where = f"row {i}"
        yield where, row if isinstance(row, dict) else BadRow(where, f"expected an object, got {type(row).__name__}")


def _records_from_object(data: dict, name: str) -> list:
    lists = {k: v for k, v in data.items() if isinstance(v, list)}
    if len(lists) == 1 and len(data) == 1:
        return next(iter(lists.values()))  # {"data": [...]}
    if lists and len(lists) == len(data) and len({len(v) for v in lists.values()}) == 1:
        columns = list(lists)
        return [dict(zip(columns, values, strict=True)) for values in zip(*lists.values(), strict=True)]
    raise TuneForgeError(f"{name}: a JSON object must hold one list of records, or equal-length column lists")


def _delimited(lines: Iterator[str], delimiter: str, name: str) -> Iterator[tuple[str, Record | BadRow]]:
    reader = csv.reader(lines, delimiter=delimiter)
    try:
        header = next(reader)
    except StopIteration:
        raise TuneForgeError(f"{name}: file has no header row") from None
    except csv.Error as exc:
        raise TuneForgeError(f"{name}: line 1: cannot parse header ({exc})") from None
    header = [h.strip() for h in header]
    if not any(header):
        raise TuneForgeError(f"{name}: the header row is empty")
    while True:
        try:
            cells = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            raise TuneForgeError(f"{name}: line {reader.line_num}: cannot parse ({exc})") from None
        where = f"line {reader.line_num}"
        if not cells or not any(c.strip() for c in cells):
            continue
        if len(cells) != len(header):
            yield where, BadRow(where, f"{len(cells)} fields, but the header has {len(header)}")
            continue
        yield where, dict(zip(header, cells, strict=True))


def _paragraphs(lines: Iterator[str]) -> Iterator[tuple[str, Record | BadRow]]:
    """Documents separated by blank lines; a file without blank lines gives one document per line."""
    block: list[str] = []
    start = 1
    single_lines: list[tuple[int, str]] = []
    saw_blank = False
    for lineno, line in enumerate(lines, start=1):
        if line.strip():
            if not block:
                start = lineno
            block.append(line.rstrip("\r\n"))
            single_lines.append((lineno, line.strip()))
        else:
            saw_blank = True
            if block:
                yield f"line {start}", {"text": "\n".join(block)}
                block = []
    if block:
        if saw_blank:
            yield f"line {start}", {"text": "\n".join(block)}
        else:
            for lineno, text in single_lines:
                yield f"line {lineno}", {"text": text}


def _parquet(path: Path) -> Iterator[tuple[str, Record | BadRow]]:
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path)
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for corrupt files
        raise TuneForgeError(f"{path.name}: not a readable Parquet file ({str(exc).splitlines()[0]})") from None
    row = 0
    for batch in parquet.iter_batches(batch_size=10_000):
        for record in batch.to_pylist():
            row += 1
            yield f"row {row}", record
