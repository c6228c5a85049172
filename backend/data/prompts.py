"""Prompts for reinforcement learning (task grpo): what the model is asked, and what rewards may compare with.

Any layout the Dataset tab reads gives a prompt: a conversation's turns up to its last user turn, an
alpaca instruction (with its input and history), a `prompt` (text or a list of messages) or a
`question`. Every other column with a plain value (text, number, true/false) is a reference that
reward functions receive by its column name: `answer` for exact_answer by default, `solution`, ...
An answer written in the conversation itself is dropped from the prompt: it is what the model
must now produce.
"""

from __future__ import annotations

from typing import Any

from backend.data.messages import Example, alpaca_prompt, field_text, openai_messages, sharegpt_messages
from backend.data.readers import RowError

# The columns a prompt can come from, in the order they are tried.
PROMPT_SOURCES = ("messages", "conversations", "instruction", "prompt", "question")
# Columns that shape the prompt, and so are not references.
PROMPT_PARTS = {*PROMPT_SOURCES, "input", "system", "history", "tools"}


def to_prompt_example(row: dict[str, Any], tags: dict[str, str]) -> Example:
    messages = prompt_messages(row, tags)
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=None)
    if last_user is None:
        raise RowError("no user turn to use as the prompt")
    messages = messages[: last_user + 1]
    if not messages[-1]["content"].strip():
        raise RowError("empty prompt")
    return {"messages": messages, "references": references(row)}


def prompt_messages(row: dict[str, Any], tags: dict[str, str]) -> list[dict[str, Any]]:
    if "messages" in row:
        return openai_messages(row)
    if "conversations" in row:
        return sharegpt_messages(row, tags)
    if "instruction" in row:
        return alpaca_prompt(row)
    key = "prompt" if "prompt" in row else "question"
    if isinstance(row.get(key), list):  # TRL's conversational prompt: a list of messages
        return openai_messages(row, key)
    system = field_text(row, "system", required=False)
    return ([{"role": "system", "content": system}] if system else []) + [
        {"role": "user", "content": field_text(row, key)}
    ]


def references(row: dict[str, Any]) -> dict[str, Any]:
    """The row's plain-valued columns that are not part of the prompt, for reward functions."""
    kept = {}
    for key, value in row.items():
        if str(key) in PROMPT_PARTS or isinstance(value, (list, dict)) or value is None:
            continue
        kept[str(key)] = value
    return kept


def reference_columns(examples: list[Example]) -> list[str]:
    """The reference columns the rewards will see, in first-seen order."""
    return list(dict.fromkeys(key for e in examples for key in e.get("references", {})))
