"""Dataset formats: detect them from column names, and turn each record into an example.

An example is one of:
  {"messages": [{role, content}, ...]}   alpaca, sharegpt, openai, prompt_completion (task sft)
  {"text": str}                           text (task pt)
  {"text": str, "label": str}             classification (task classification)
  {"messages": [..., chosen answer], "rejected": str}
                                          preference (tasks dpo, orpo, kto): the prompt with its chosen
                                          answer as a conversation, so every chat tool reads it as one
  {"messages": [..., answer], "desirable": bool}
                                          kto: one answer, judged good or bad (task kto)
See backend/data/preference.py for the preference layouts.

A column mapping renames the user's columns to the canonical ones before detection, so
{"prompt": "question", "response": "answer"} makes any question/answer table usable.
"""

from __future__ import annotations

from typing import Any

from backend.data.entries import TAG_DEFAULTS
from backend.data.readers import RowError
from backend.data.toolcalls import call_text, parse_tools, tool_call_message, tool_result_message
from backend.errors import TuneForgeError

CHAT_FORMATS = ("alpaca", "sharegpt", "openai", "prompt_completion")
PREFERENCE_FORMATS = ("preference", "kto")
FORMATS = (*CHAT_FORMATS, "text", "classification", *PREFERENCE_FORMATS)
TASK_FORMATS = {
    "sft": CHAT_FORMATS,
    "pt": ("text",),
    "classification": ("classification",),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "kto": ("kto", "preference"),  # a pair is two judged answers: the chosen good, the rejected bad
}

# Canonical column for each mapping key (LLaMA-Factory's dataset_info "columns" names).
MAPPING_TARGETS = {
    "prompt": "instruction",
    "query": "input",
    "response": "output",
    "system": "system",
    "history": "history",
    "messages": "conversations",
    "tools": "tools",
    "text": "text",
    "label": "label",
    "chosen": "chosen",
    "rejected": "rejected",
    "kto_tag": "label",
}
# Accepted beside the registry's tags, as before tags existed: many sharegpt files say user/assistant.
SHAREGPT_ROLES = {"human": "user", "user": "user", "gpt": "assistant", "assistant": "assistant", "system": "system"}
OPENAI_ROLES = ("user", "assistant", "system")

Example = dict[str, Any]


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


def detect_format(columns: list[str], name: str, task: str = "sft") -> str:
    keys = set(columns)
    if {"chosen", "rejected"} <= keys:
        return "preference"
    if task == "kto" and "label" in keys and keys & {"messages", "conversations", "completion", "output"}:
        return "kto"
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
        "preference": ("chosen", "rejected"),
        "kto": ("label",),
    }[fmt]


def to_example(fmt: str, row: dict[str, Any], tags: dict[str, str] | None = None) -> Example:
    """One record as an example; raises RowError with a short reason. tags: sharegpt keys (see entries.py)."""
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
    if fmt in PREFERENCE_FORMATS:
        from backend.data.preference import to_preference_example  # it builds on this module's parsers

        return to_preference_example(fmt, row, {**TAG_DEFAULTS, **(tags or {})})
    if fmt == "sharegpt":
        messages = sharegpt_messages(row, {**TAG_DEFAULTS, **(tags or {})})
    else:
        messages = {"alpaca": _alpaca, "openai": openai_messages, "prompt_completion": _prompt_completion}[fmt](row)
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise RowError("no assistant answer to train on")
    if any(not m["content"].strip() and not m.get("tool_calls") for m in answers):
        raise RowError("empty answer")
    tools = parse_tools(row.get("tools"))
    return {"messages": messages, "tools": tools} if tools else {"messages": messages}


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
    return alpaca_prompt(row) + [{"role": "assistant", "content": _text(row, "output")}]


def alpaca_prompt(row: dict[str, Any]) -> list[dict[str, str]]:
    """System, history and the instruction (with its input) of an alpaca row: everything but the answer."""
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
    return messages + [{"role": "user", "content": prompt}]


def sharegpt_messages(row: dict[str, Any], tags: dict[str, str]) -> list[dict[str, Any]]:
    turns = row.get("conversations")
    if not isinstance(turns, list) or not turns:
        raise RowError("'conversations' must be a non-empty list")
    messages = []
    system = _text(row, "system", required=False)
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
            messages.append(tool_result_message(_turn_text(turn, content_key, i), waiting))
        else:
            messages.append({"role": role, "content": _turn_text(turn, content_key, i)})
    return messages


def openai_messages(row: dict[str, Any], key: str = "messages") -> list[dict[str, str]]:
    turns = row.get(key)
    if not isinstance(turns, list) or not turns:
        raise RowError(f"'{key}' must be a non-empty list")
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
