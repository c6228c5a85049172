"""Rows as conversations: the parsers that turn a record's fields and turns into chat messages.

Shared by the chat formats (backend.data.formats) and the preference layouts (backend.data.pairs),
which read a prompt the same way and differ only in the answers around it.
"""

from __future__ import annotations

from typing import Any

from backend.data.readers import RowError
from backend.data.toolcalls import call_text, tool_call_message, tool_result_message

# Accepted beside the registry's tags, as before tags existed: many sharegpt files say user/assistant.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = ("user", "assistant", "system")

Example = dict[str, Any]


def field_text(row: dict[str, Any], key: str, required: bool = True) -> str:
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


def alpaca_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    return alpaca_prompt(row) + [{"role": "assistant", "content": field_text(row, "output")}]


def alpaca_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """System, history and the instruction (with its input) of an alpaca row: everything but the answer."""
    messages = []
    system = field_text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    history = row.get("history") or []
    if not isinstance(history, list):
        raise RowError("'history' must be a list of [question, answer] pairs")
    for turn in history:
        if not (isinstance(turn, (list, tuple)) and len(turn) == 2):
            raise RowError("'history' must be a list of [question, answer] pairs")
        messages += [{"role": "user", "content": str(turn[0])}, {"role": "assistant", "content": str(turn[1])}]
    instruction = field_text(row, "instruction")
    extra = field_text(row, "input", required=False)
    prompt = f"{instruction}\n\n{extra}" if extra.strip() else instruction
    if not prompt.strip():
        raise RowError("empty instruction")
    return messages + [{"role": "user", "content": prompt}]


def sharegpt_messages(row: dict[str, Any], tags: dict[str, str]) -> list[dict[str, Any]]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RowError("'conversations' must be a non-empty list")
    messages = []
    system = field_text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    roles = {
        **SHAREGPT_ROLES,
        tags["user_tag"]: "user",
        tags["assistant_tag"]: "assistant",
        tags["system_tag"]: "system",
        tags["observation_tag"]: "tool",
        tags["function_tag"]: "function_call",
    }
    role_key, content_key = tags["role_tag"], tags["content_tag"]
    waiting: list[dict[str, Any]] = []  # calls not yet answered by an observation turn
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or role_key not in turn or content_key not in turn:
            raise RowError(f"turn {i} needs '{role_key}' and '{content_key}'")
        role = roles.get(turn[role_key]) if isinstance(turn[role_key], str) else None
        if role is None:
            known = ", ".join(tags[t] for t in ("user_tag", "assistant_tag", "system_tag", "function_tag"))
            raise RowError(f"turn {i}: unknown role {turn[role_key]!r} (use {known} or {tags['observation_tag']})")
        if role == "function_call":
            messages.append(tool_call_message(turn[content_key], i))
            waiting = list(messages[-1]["tool_calls"])
        elif role == "tool":
            messages.append(tool_result_message(turn_text(turn, content_key, i), waiting))
        else:
            messages.append({"role": role, "content": turn_text(turn, content_key, i)})
    return messages


def openai_messages(row: dict[str, Any], key: str = "messages") -> list[dict[str, str]]:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RowError(f"'{key}' must be a non-empty list")
    messages = []
    for i, turn in enumerate(turns, start=1):
        if not isinstance(turn, dict) or turn.get("role") not in OPENAI_ROLES:
            raise RowError(f"message {i} needs a role of user, assistant or system")
        messages.append({"role": turn["role"], "content": turn_text(turn, "content", i)})
    return messages


def turn_text(turn: dict[str, Any], key: str, i: int) -> str:
    try:
        return field_text(turn, key)
    except RowError as exc:
        raise RowError(f"turn {i}: {exc}") from None


def prompt_completion_messages(row: dict[str, Any]) -> list[dict[str, str]]:
    answer_key = "completion" if "completion" in row else "response"
    prompt = field_text(row, "prompt")
    if not prompt.strip():
        raise RowError("empty prompt")
    messages = []
    system = field_text(row, "system", required=False)
    if system:
        messages.append({"role": "system", "content": system})
    return messages + [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": field_text(row, answer_key)},
    ]


def example_text(example: Example) -> str:
    """All of an example's text in one string, for duplicate and leakage checks."""
    if "messages" in example:
        text = "\n".join(
            f"{m['role']}: {m['content']}" + (f" {call_text(m)}" if m.get("tool_calls") else "")
            for m in example["messages"]
        )
        if "rejected" in example:
            text += f"\nrejected: {example['rejected']}"
        if "desirable" in example:
            text += f"\ndesirable: {example['desirable']}"
        return text
    return example["text"] + (f"\nlabel: {example['label']}" if "label" in example else "")


def map_texts(example: Example, change) -> Example:
    """The example with change(text) applied to every text a person wrote: turns, text, rejected answer."""
    mapped = dict(example)
    if "messages" in mapped:
        mapped["messages"] = [{**m, "content": change(m["content"])} for m in mapped["messages"]]
    for key in ("text", "rejected"):
        if key in mapped:
            mapped[key] = change(mapped[key])
    return mapped
