"""Tool-call conversations: LLaMA-Factory's function_call/observation turns and tools column.

They become the shape Hugging Face chat templates read (transformers' tool-use convention):
  a function_call turn  → {"role": "assistant", "content": "", "tool_calls": [{"type": "function",
                           "function": {"name", "arguments"}}]}
  an observation turn   → {"role": "tool", "content": the result, "tool_call_id", "name"}
  the tools column      → example["tools"], a list of {"type": "function", "function": schema}
so the model's own template renders them the way it was taught to call tools. Whether a template
can is checked where the tokenizer is known (templates.py), never guessed here.
"""

from __future__ import annotations

import json
from typing import Any

from backend.data.readers import RowError


def parse_tools(value: Any) -> list[dict[str, Any]]:
    """The tools column (a JSON string or a list of function schemas); [] when empty."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return []
    if isinstance(value, str):
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"'tools' is not valid JSON ({exc.msg})") from None
    if isinstance(value, dict):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        raise RowError("'tools' must be a list of function descriptions")
    tools = []
    for tool in value:
        schema = tool.get("function", tool) if tool.get("type") == "function" else tool
        if not isinstance(schema, dict) or not isinstance(schema.get("name"), str):
            raise RowError("every entry of 'tools' needs a name")
        tools.append({"type": "function", "function": schema})
    return tools


def tool_call_message(value: Any, turn: int) -> dict[str, Any]:
    """A function_call turn's value ({"name", "arguments"} as JSON, or a list of them) as an assistant message."""
    calls = value
    if isinstance(value, str):
        try:
            calls = json.loads(value)
        except json.JSONDecodeError as exc:
            raise RowError(f"turn {turn}: the function call is not valid JSON ({exc.msg})") from None
    if isinstance(calls, dict):
        calls = [calls]
    if not isinstance(calls, list) or not calls:
        raise RowError(f"turn {turn}: a function call must be an object with 'name' and 'arguments'")
    return {"role": "assistant", "content": "", "tool_calls": [_call(c, turn, i) for i, c in enumerate(calls)]}


def _call(call: Any, turn: int, index: int) -> dict[str, Any]:
    if not isinstance(call, dict) or not isinstance(call.get("name"), str):
        raise RowError(f"turn {turn}: a function call needs a 'name'")
    arguments = call.get("arguments", {})
    if isinstance(arguments, str):
        # OpenAI-style calls carry arguments as a JSON string; templates expect the object.
        try:
            arguments = json.loads(arguments)
        except json.JSONDecodeError:
            pass
    # LLaMA-Factory's data has no call ids, but some templates (Mistral's) refuse calls without
    # one of exactly 9 letters or digits; results then name the call they answer.
    call_id = f"call{turn * 10 + index:05d}"
    return {"id": call_id, "type": "function", "function": {"name": call["name"], "arguments": arguments}}


def tool_result_message(content: str, calls: list[dict[str, Any]]) -> dict[str, Any]:
    """An observation turn as a tool message, answering the oldest call still waiting (removed from calls)."""
    message: dict[str, Any] = {"role": "tool", "content": content}
    if calls:
        call = calls.pop(0)
        message.update(tool_call_id=call["id"], name=call["function"]["name"])
    return message


def call_text(message: dict[str, Any]) -> str:
    """A message's calls as text, for duplicate keys and previews."""
    return json.dumps([c["function"] for c in message.get("tool_calls", [])], ensure_ascii=False, sort_keys=True)
