"""Dataset formats: detect them from column names, and turn each record into an example.

An example is one of:
  {"messages": [{role, content}, ...]}   alpaca, sharegpt, openai, prompt_completion (task sft)
  {"text": str}                           text (task pt)
  {"text": str, "label": str}             classification (task classification)

A column mapping renames the user's columns to the canonical ones before detection, so
{"prompt": "question", "response": "answer"} makes any question/answer table usable.
"""

from __future__ import annotations

from typing import Any

from backend.errors import TuneForgeError

CHAT_FORMATS = ("alpaca", "sharegpt", "openai", "prompt_completion")
FORMATS = (*CHAT_FORMATS, "text", "classification")
TASK_FORMATS = {"sft": CHAT_FORMATS, "pt": ("text",), "classification": ("classification",)}

# Canonical column for each mapping key (LLaMA-Factory's dataset_info "columns" names).
MAPPING_TARGETS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "system": "system",
    "history": "history",
    "messages": "conversations",
    "text": "text",
    "label": "label",
}
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = ("user", "assistant", "system")

Example = dict[str, Any]


class RowError(ValueError):
    """One record's problem; the caller adds where it is and decides to skip or refuse."""


def apply_mapping(record: dict[str, Any], mapping: dict[str, str]) -> dict[str, Any]:
    if not mapping:
        return record
    renamed = dict(record)
    for key, column in mapping.items():
        if column in record:
            renamed[MAPPING_TARGETS[key]] = record[column]
    return renamed


def check_mapping(columns: list[str], mapping: dict[str, str], name: str) -> None:
    for key, column in mapping.items():
        if key not in MAPPING_TARGETS:
            raise TuneForgeError(f"unknown column role '{key}' (use {', '.join(MAPPING_TARGETS)})")
        if column not in columns:
            raise TuneForgeError(f"{name}: column '{column}' not found; columns are: {', '.join(map(str, columns))}")


def detect_format(columns: list[str], name: str) -> str:
    keys = set(columns)
    if "messages" in keys:
        return "openai"
    if "conversations" in keys:
        return "sharegpt"
    if {"instruction", "output"} <= keys:
        return "alpaca"
    if "prompt" in keys and ({"completion", "response"} & keys):
        return "prompt_completion"
    if {"text", "label"} <= keys:
        return "classification"
    if "text" in keys:
        return "text"
    raise TuneForgeError(
        f"{name}: cannot tell the dataset format from columns: {', '.join(sorted(map(str, keys)))} "
        "(expected instruction/output, conversations, messages, prompt/completion, text, or text/label; "
        "or map your columns)"
    )


def required_columns(fmt: str) -> tuple[str, ...]:
    return {
        "alpaca": ("instruction", "output"),
        "sharegpt": ("conversations",),
        "openai": ("messages",),
        "prompt_completion": ("prompt",),
        "text": ("text",),
        "classification": ("text", "label"),
    }[fmt]


def to_example(fmt: str, row: dict[str, Any]) -> Example:
    """One record as an example; raises RowError with a short reason."""
    if fmt == "text":
        text = _text(row, "text")
        if not text.strip():
            raise RowError("empty text")
        return {"text": text}
    if fmt == "classification":
        text, label = _text(row, "text"), row.get("label")
        if not text.strip():
            raise RowError("empty text")
        if label is None or isinstance(label, (list, dict)) or str(label).strip() == "":
            raise RowError("missing label")
        return {"text": text, "label": str(label).strip()}
    messages = {"alpaca": _alpaca, "sharegpt": _sharegpt, "openai": _openai, "prompt_completion": _prompt_completion}[
        fmt
    ](row)
    if not any(m["role"] == "assistant" for m in messages):
        raise RowError("no assistant answer to train on")
    if any(m["role"] == "assistant" and not m["content"].strip() for m in messages):
        raise RowError("empty answer")
    return {"messages": messages}


def _text(row: dict[str, Any], key: str, required: bool = True) -> str:
    value = row.get(key)
    if value is None or (isinstance(value, float) and value != value):  # NaN from parquet
        if required:
            raise RowError(f"missing '{key}'")
        return ""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be text, got {type(value).__name__}")
    return value


def _alpaca(row: dict[str, Any]) -> list[dict[str, str]]:
    messages = []
    system = _text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError("'history' must be a list of [question, answer] pairs")
    for turn in history:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise RowError("'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    instruction = _text(row, "instruction")
    extra = _text(row, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip():
        raise RowError("empty instruction")
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, "output")}]


def _sharegpt(row: dict[str, Any]) -> list[dict[str, str]]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RowError("'conversations' must be a non-empty list")
    messages = []
    system = _text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or "from" not in turn or "value" not in turn:
            raise RowError(f"turn {i} needs 'from' and 'value'")
        role = SHAREGPT_ROLES.get(turn["from"]) if isinstance(turn["from"], str) else None
        if role is None:
            raise RowError(f"turn {i}: unknown role {turn['from']!r} (use human, gpt or system)")
        messages.append({"role": role, "content": _turn_text(turn, "value", i)})
    return messages


def _openai(row: dict[str, Any]) -> list[dict[str, str]]:
    turns = row.get("messages")
    if not isinstance(turns, list) or not turns:
        raise RowError("'messages' must be a non-empty list")
    messages = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or turn.get("role") not in OPENAI_ROLES:
            raise RowError(f"message {i} needs a role of user, assistant or system")
        messages.append({"role": turn["role"], "content": _turn_text(turn, "content", i)})
    return messages


def _turn_text(turn: dict[str, Any], key: str, i: int) -> str:
    try:
        return _text(turn, key)
    except RowError as exc:
        raise RowError(f"turn {i}: {exc}") from None


def _prompt_completion(row: dict[str, Any]) -> list[dict[str, str]]:
    answer_key = "completion" if "completion" in row else "response"
    prompt = _text(row, "prompt")
    if not prompt.strip():
        raise RowError("empty prompt")
    messages = []
    system = _text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    return messages + [{"role": "user", "content": prompt}, {"role": "assistant", "content": _text(row, answer_key)}]


def example_text(example: Example) -> str:
    """All of an example's text in one string, for duplicate and leakage checks."""
    if "messages" in example:
        return "\n".join(f"{m['role']}: {m['content']}" for m in example["messages"])
    return example["text"] + (f"\nlabel: {example['label']}" if "label" in example else "")
