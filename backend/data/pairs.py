"""Preference rows: a prompt with a chosen and a rejected answer (dpo, orpo), or one judged answer (kto).

The layouts read, as LLaMA-Factory and TRL write them:
  sharegpt  conversations (the prompt turns) + chosen/rejected turns {from, value}, as dpo_en_demo.json
  openai    messages (the prompt turns) + chosen/rejected {role, content}
  alpaca    instruction (+ input, system, history) + chosen/rejected texts
  prompt    prompt (a text, or a list of turns) + chosen/rejected (texts, turns or lists of turns)
and for kto a whole conversation ending in the answer, or prompt/instruction + completion/output,
with a boolean label (LLaMA-Factory's kto_tag), as kto_en_demo.json.

A preference example keeps the prompt and its chosen answer as one conversation, so statistics,
previews, cleaning and chat tools read it as they read any chat; the rejected answer rides beside it.
"""

from __future__ import annotations

from typing import Any

from backend.data.messages import Example, alpaca_prompt, openai_messages, sharegpt_messages
from backend.data.readers import RowError

TRUE_WORDS = {"true", "yes", "1", "good", "desirable"}
FALSE_WORDS = {"false", "no", "0", "bad", "undesirable"}


def to_preference_example(fmt: str, row: dict[str, Any], tags: dict[str, str]) -> Example:
    if fmt == "preference":
        prompt = _prompt(row, tags)
        chosen, rejected = _answer(row, "chosen", tags), _answer(row, "rejected", tags)
        if chosen == rejected:
            raise RowError("chosen and rejected answers are the same")
        return {"messages": [*prompt, {"role": "assistant", "content": chosen}], "rejected": rejected}
    messages = _judged_conversation(row, tags)
    return {"messages": messages, "desirable": _flag(row.get("label"))}


def _prompt(row: dict[str, Any], tags: dict[str, str]) -> list[dict[str, Any]]:
    """The turns before the answer; they must end with the user's (or a tool's) turn."""
    if "conversations" in row:
        messages = sharegpt_messages(row, tags)
    elif "messages" in row:
        messages = openai_messages(row)
    elif "instruction" in row:
        messages = alpaca_prompt(row)
    elif isinstance(row.get("prompt"), list):
        messages = openai_messages(row, "prompt")
    elif "prompt" in row:
        text = row["prompt"]
        if not isinstance(text, str) or not text.strip():
            raise RowError("empty prompt")
        messages = [{"role": "user", "content": text}]
    else:
        raise RowError("no prompt: expected conversations, messages, instruction or prompt")
    if messages[-1]["role"] not in ("user", "tool"):
        raise RowError(f"the prompt must end with a user turn, not {messages[-1]['role']}")
    return messages


def _answer(row: dict[str, Any], key: str, tags: dict[str, str]) -> str:
    """A chosen/rejected answer: a text, one turn, or a list of turns ending with the answer."""
    value = row.get(key)
    if isinstance(value, list):
        value = value[-1] if value else None
    if isinstance(value, dict):
        content_key = tags["content_tag"] if tags["content_tag"] in value else "content"
        value = value.get(content_key)
    if not isinstance(value, str):
        raise RowError(f"'{key}' must be a text or a turn with {tags['content_tag']!r}")
    if not value.strip():
        raise RowError(f"empty {key} answer")
    return value


def _judged_conversation(row: dict[str, Any], tags: dict[str, str]) -> list[dict[str, Any]]:
    if "conversations" in row or "messages" in row:
        messages = sharegpt_messages(row, tags) if "conversations" in row else openai_messages(row)
        if messages[-1]["role"] != "assistant" or len(messages) < 2:
            raise RowError("the conversation must end with the assistant's answer being judged")
        if not messages[-1]["content"].strip():
            raise RowError("empty answer")
        return messages
    answer_key = next((k for k in ("completion", "output", "response") if k in row), None)
    if answer_key is None:
        raise RowError("no answer: expected conversations, messages, completion or output")
    answer = row[answer_key]
    if not isinstance(answer, str) or not answer.strip():
        raise RowError(f"empty {answer_key}")
    prompt = alpaca_prompt(row) if "instruction" in row else _prompt(row, tags)
    return [*prompt, {"role": "assistant", "content": answer}]


def _flag(value: Any) -> bool:
    """A KTO label: true/false, 1/0, or words such as yes/no."""
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in TRUE_WORDS | FALSE_WORDS:
        return value.strip().lower() in TRUE_WORDS
    raise RowError(f"label must be true or false, got {value!r}")
