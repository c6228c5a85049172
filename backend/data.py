"""Datasets: read a file, detect its format, and normalise every row to chat messages.

Supported formats (detected from the keys of the first row):
  alpaca             instruction / input / output (+ optional system, history)
  sharegpt           conversations: [{from: human|gpt|system, value}]
  openai             messages: [{role: user|assistant|system, content}]
  prompt_completion  prompt / completion (or response)

Every problem is reported as a TuneForgeError naming the file and the line or row.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError
from backend.paths import ASSETS_DIR

SUPPORTED_SUFFIXES = (".json", ".jsonl", ".csv", ".parquet")
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = {"user", "assistant", "system"}

Messages = list[dict[str, str]]


@dataclass
class DatasetInfo:
    """What the Dataset tab shows about a file before training."""

    path: str
    format: str
    rows: int
    columns: list[str]
    preview: list[dict[str, Any]] = field(default_factory=list)


def demo_datasets() -> dict[str, Path]:
    """Bundled demo datasets by name (file stem)."""
    return {p.stem: p for p in sorted(ASSETS_DIR.glob("*.json*"))}


def resolve_dataset(spec: str) -> Path:
    """A demo name or a file path, resolved to an existing file."""
    demos = demo_datasets()
    if spec in demos:
        return demos[spec]
    path = Path(spec).expanduser()
    if path.is_file():
        return path
    names = ", ".join(demos) or "none"
    raise TuneForgeError(f"dataset '{spec}' is neither a file nor a bundled demo (demos: {names})")


def read_records(path: Path) -> list[dict[str, Any]]:
    """Rows of a CSV/JSON/JSONL/Parquet file as dicts; errors are located by line."""
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise TuneForgeError(f"{path.name}: unsupported file type '{suffix}' (use {', '.join(SUPPORTED_SUFFIXES)})")
    if path.stat().st_size == 0:
        raise TuneForgeError(f"{path.name}: file is empty")
    if suffix in (".csv", ".parquet"):
        records = _read_table(path)
    else:
        text = _read_text(path)
        records = (
            _read_jsonl(path, text)
            if suffix == ".jsonl" or not text.lstrip().startswith("[")
            else _read_json(path, text)
        )
    if not records:
        raise TuneForgeError(f"{path.name}: file has no rows")
    return records


def _read_text(path: Path) -> str:
    raw = path.read_bytes()
    if b"\x00" in raw[:4096]:
        raise TuneForgeError(f"{path.name}: not a text file")
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise TuneForgeError(f"{path.name}: line {line}: not valid UTF-8 (byte 0x{raw[exc.start]:02x})") from None


def _read_json(path: Path, text: str) -> list[dict[str, Any]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise TuneForgeError(f"{path.name}: line {exc.lineno}: invalid JSON ({exc.msg})") from None
    if not isinstance(data, list):
        raise TuneForgeError(f"{path.name}: expected a JSON list of records")
    for i, row in enumerate(data, start=1):
        if not isinstance(row, dict):
            raise TuneForgeError(f"{path.name}: row {i}: expected an object, got {type(row).__name__}")
    return data


def _read_jsonl(path: Path, text: str) -> list[dict[str, Any]]:
    records = []
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise TuneForgeError(f"{path.name}: line {lineno}: invalid JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise TuneForgeError(f"{path.name}: line {lineno}: expected an object, got {type(row).__name__}")
        records.append(row)
    return records


def _read_table(path: Path) -> list[dict[str, Any]]:
    import pandas as pd

    try:
        if path.suffix.lower() == ".csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding="utf-8-sig")
        else:
            frame = pd.read_parquet(path)
    except UnicodeDecodeError as exc:
        raise TuneForgeError(f"{path.name}: not valid UTF-8 ({exc.reason})") from None
    except Exception as exc:  # pandas raises many parser types; the user needs the message, not the class
        raise TuneForgeError(
            f"{path.name}: cannot parse {path.suffix[1:].upper()} ({str(exc).splitlines()[0]})"
        ) from None
    return frame.to_dict(orient="records")


def detect_format(path: Path, records: list[dict[str, Any]]) -> str:
    keys = set(records[0])
    if "messages" in keys:
        return "openai"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "prompt" in keys and ({"completion", "response"} & keys):
        return "prompt_completion"
    raise TuneForgeError(
        f"{path.name}: cannot tell the dataset format from columns: {', '.join(sorted(map(str, keys)))} "
        "(expected instruction/output, conversations, messages, or prompt/completion)"
    )


def to_messages(fmt: str, row: dict[str, Any], where: str) -> Messages:
    """One row in any supported format as a list of {role, content} messages."""
    converters = {
        "alpaca": _alpaca,
        "sharegpt": _sharegpt,
        "openai": _openai,
        "prompt_completion": _prompt_completion,
    }
    messages = converters[fmt](row, where)
    if not any(m["role"] == "assistant" for m in messages):
        raise TuneForgeError(f"{where}: no assistant answer to train on")
    for m in messages:
        if m["role"] == "assistant" and not m["content"].strip():
            raise TuneForgeError(f"{where}: empty answer")
    return messages


def _text(row: dict[str, Any], key: str, where: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):  # NaN from parquet
        if required:
            raise TuneForgeError(f"{where}: missing '{key}'")
        return ""
    if not isinstance(value, str):
        raise TuneForgeError(f"{where}: '{key}' must be text, got {type(value).__name__}")
    return value


def _alpaca(row: dict[str, Any], where: str) -> Messages:
    messages: Messages = []
    system = _text(row, "system", where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    for turn in row.get("history") or []:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise TuneForgeError(f"{where}: 'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    instruction = _text(row, "instruction", where)
    extra = _text(row, "input", where, required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip():
        raise TuneForgeError(f"{where}: empty instruction")
    messages += [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, "output", where)}]
    return messages


def _sharegpt(row: dict[str, Any], where: str) -> Messages:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise TuneForgeError(f"{where}: 'conversations' must be a non-empty list")
    messages: Messages = []
    system = _text(row, "system", where, required=False)
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise TuneForgeError(f"{where}: turn {i} needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"])
        if role is None:
            raise TuneForgeError(f"{where}: turn {i}: unknown role '{turn['from']}' (use human, gpt or system)")
        messages.append({"role": role, "content": _text(turn, "value", f"{where}: turn {i}")})
    return messages


def _openai(row: dict[str, Any], where: str) -> Messages:
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        raise TuneForgeError(f"{where}: 'messages' must be a non-empty list")
    messages: Messages = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or turn.get("role") not in OPENAI_ROLES:
            raise TuneForgeError(f"{where}: message {i} needs a role of user, assistant or system")
        messages.append({"role": turn["role"], "content": _text(turn, "content", f"{where}: message {i}")})
    return messages


def _prompt_completion(row: dict[str, Any], where: str) -> Messages:
    answer_key = "completion" if "completion" in row else "response"
    prompt = _text(row, "prompt", where)
    if not prompt.strip():
        raise TuneForgeError(f"{where}: empty prompt")
    return [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, answer_key, where)}]


def load_conversations(spec: str, max_samples: int = 0) -> list[Messages]:
    """The whole dataset as conversations; the first bad row stops it with its location."""
    path = resolve_dataset(spec)
    records = read_records(path)
    fmt = detect_format(path, records)
    if max_samples:
        records = records[:max_samples]
    return [to_messages(fmt, row, f"{path.name}: row {i}") for i, row in enumerate(records, start=1)]


def inspect_dataset(spec: str, preview_rows: int = 5) -> DatasetInfo:
    """Read, detect and fully validate a dataset, returning what the UI shows about it."""
    path = resolve_dataset(spec)
    records = read_records(path)
    fmt = detect_format(path, records)
    for i, row in enumerate(records, start=1):
        to_messages(fmt, row, f"{path.name}: row {i}")
    columns = list(dict.fromkeys(key for row in records[:100] for key in row))
    preview = [{k: _cell(v) for k, v in row.items()} for row in records[:preview_rows]]
    return DatasetInfo(path=str(path), format=fmt, rows=len(records), columns=columns, preview=preview)


def _cell(value: Any) -> Any:
    """Nested values (conversations, history) shown as compact JSON in a table cell."""
    if isinstance(value, (list, dict)):
        return json.dumps(value, ensure_ascii=False)
    return value


def store_upload(source: str | Path, uploads_dir: str | Path) -> Path:
    """Copy an uploaded file into the workspace, so jobs can read it after the browser's temp file is gone."""
    source = Path(source)
    if source.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise TuneForgeError(f"{source.name}: unsupported file type (use {', '.join(SUPPORTED_SUFFIXES)})")
    uploads_dir = Path(uploads_dir)
    uploads_dir.mkdir(parents=True, exist_ok=True)
    target = uploads_dir / source.name
    stem, n = source.stem, 1
    while target.exists() and target.read_bytes() != source.read_bytes():
        n += 1
        target = uploads_dir / f"{stem}-{n}{source.suffix}"
    if not target.exists():
        shutil.copyfile(source, target)
    return target
