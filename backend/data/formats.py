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
  {"messages": [..., user turn], "references": {column: value}}
                                          prompts: what the model is asked, with the columns rewards
                                          compare against (task grpo; backend/data/prompts.py)
See backend/data/pairs.py for the preference layouts, and backend/data/messages.py for the
row-to-conversation parsers they share.

A column mapping renames the user's columns to the canonical ones before detection, so
{"prompt": "question", "response": "answer"} makes any question/answer table usable.
"""

from __future__ import annotations

from typing import Any

from backend.data.entries import TAG_DEFAULTS
from backend.data.messages import (
    Example,
    alpaca_messages,
    field_text,
    openai_messages,
    prompt_completion_messages,
    sharegpt_messages,
)
from backend.data.pairs import to_preference_example
from backend.data.prompts import PROMPT_SOURCES, to_prompt_example
from backend.data.readers import RowError
from backend.data.toolcalls import parse_tools
from backend.errors import TuneForgeError

CHAT_FORMATS = ("alpaca", "sharegpt", "openai", "prompt_completion")
PREFERENCE_FORMATS = ("preference", "kto")
FORMATS = (*CHAT_FORMATS, "text", "classification", *PREFERENCE_FORMATS, "prompts")
TASK_FORMATS = {
    "sft": CHAT_FORMATS,
    "pt": ("text",),
    "classification": ("classification",),
    "dpo": ("preference",),
    "orpo": ("preference",),
    "kto": ("kto", "preference"),  # a pair is two judged answers: the chosen good, the rejected bad
    "grpo": ("prompts",),
    "rm": ("preference",),  # a reward model learns to score the chosen answer above the rejected one
    "ppo": ("prompts",),
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
    "images": "images",
}


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
    if task == "grpo" and keys & set(PROMPT_SOURCES):
        return "prompts"
    if task == "grpo":
        raise TuneForgeError(
            f"{name}: no prompt column among: {', '.join(sorted(map(str, keys)))} (task grpo reads the prompt "
            f"from {', '.join(PROMPT_SOURCES)}; or map your columns)"
        )
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
        "prompts": (),
    }[fmt]


def to_example(fmt: str, row: dict[str, Any], tags: dict[str, str] | None = None) -> Example:
    """One record as an example; raises RowError with a short reason. tags: sharegpt keys (see entries.py)."""
    if fmt == "text":
        text = field_text(row, "text")
        if not text.strip():
            raise RowError("empty text")
        return {"text": text}
    if fmt == "classification":
        text, label = field_text(row, "text"), row.get("label")
        if not text.strip():
            raise RowError("empty text")
        if label is None or isinstance(label, (list, dict)) or str(label).strip() == "":
            raise RowError("missing label")
        return {"text": text, "label": str(label).strip()}
    if fmt in PREFERENCE_FORMATS:
        return to_preference_example(fmt, row, {**TAG_DEFAULTS, **(tags or {})})
    if fmt == "prompts":
        return to_prompt_example(row, {**TAG_DEFAULTS, **(tags or {})})
    if fmt == "sharegpt":
        messages = sharegpt_messages(row, {**TAG_DEFAULTS, **(tags or {})})
    else:
        messages = {
            "alpaca": alpaca_messages,
            "openai": openai_messages,
            "prompt_completion": prompt_completion_messages,
        }[fmt](row)
    answers = [m for m in messages if m["role"] == "assistant"]
    if not answers:
        raise RowError("no assistant answer to train on")
    if any(not m["content"].strip() and not m.get("tool_calls") for m in answers):
        raise RowError("empty answer")
    tools = parse_tools(row.get("tools"))
    return {"messages": messages, "tools": tools} if tools else {"messages": messages}
