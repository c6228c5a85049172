"""The sizes and bounds every call from a browser or API client is held to, checked before anything runs.

This module holds the edge's numbers and one check applies them (webui/edge.py), so a refusal is one
line, audited, and never a traceback:

- shape(): any payload at all. Text at most MAX_TEXT characters, at most MAX_ITEMS items in a list or
  mapping, nesting at most MAX_DEPTH deep, MAX_PAYLOAD bytes in all, and numbers finite.
- the typed endpoints' arguments (ENDPOINT_TYPES) as pydantic types: ids and names at most MAX_ID
  characters, option mappings of plain values, chat settings within the Chat tab's own bounds (CHAT).
- each training option's own type, bounds, choices and length: TrainConfig's field metadata
  (backend/config.py), the same check for the UI, the API and the CLI's YAML.

pydantic, because Gradio and FastAPI already depend on it (no new package): its strict types refuse a
list where a mapping belongs instead of coercing it, and its errors name the field, so one line can say
where a call went wrong. The training options are not restated here as a pydantic model: their values go
through TrainConfig.from_dict, the one validator the form, `train_start` and `python -m backend.train`
share, so a bound changed in backend/config.py changes everywhere at once.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StringConstraints, TypeAdapter
from pydantic import ValidationError as _ValidationError

from backend.errors import TuneForgeError

MAX_ID = 200  # run ids, sweep ids, dataset names, targets (a run folder's name is at most 200 characters)
MAX_TEXT = 65_536  # characters of any one text: a chat message, a system prompt, a reward's JSON schema
MAX_ITEMS = 2_000  # items of one list or mapping (a chat history, an option mapping)
MAX_DEPTH = 8  # a sweep spec is 3 deep, a chat history with content parts 4
MAX_PAYLOAD = 2 << 20  # bytes of one call's inputs together; uploads go through Gradio's upload route
# The Chat tab's sliders and the /chat endpoint: one set of bounds (webui/tab_chat.py builds from it).
CHAT = {"temperature": (0.0, 2.0), "top_p": (0.05, 1.0), "max_new_tokens": (1, 2048)}
# Where the Chat tab's sliders start, and what the chat engine and the /chat endpoint use when a caller says nothing.
CHAT_DEFAULTS = {"temperature": 0.7, "top_p": 0.9, "max_new_tokens": 256}

Id = Annotated[str, StringConstraints(max_length=MAX_ID)]
Text = Annotated[str, StringConstraints(max_length=MAX_TEXT)]
Finite = Annotated[StrictFloat, Field(allow_inf_nan=False)]
Plain = StrictBool | StrictInt | Finite | Text | None
PathText = Annotated[str, StringConstraints(max_length=4096)]  # a path or a model spec (PATH_MAX)
Options = Annotated[dict[Id, Plain], Field(max_length=MAX_ITEMS)]
Values = Annotated[list[Plain], Field(max_length=MAX_ITEMS)]
# A sweep spec: plain keys (metric, n_trials), base (options) and space (option: [values] or {low, high, log}).
SweepSpec = Annotated[
    dict[Id, Plain | Annotated[dict[Id, Plain | Values | Options], Field(max_length=MAX_ITEMS)]],
    Field(max_length=MAX_ITEMS),
]

# A recipe's, benchmark's or judge's request: plain keys (kind, limit), lists of paths or models (sources,
# tasks, models), and one level of mapping (an endpoint: base_url, model, api_key; templates by step).
JobSpec = Annotated[dict[Id, Plain | Values | Options], Field(max_length=MAX_ITEMS)]
Key = Annotated[str, StringConstraints(max_length=4096)]  # an API key for an endpoint, given again on resume


class Part(BaseModel):
    """A content part of a chat message: text only (the studio's models read no images)."""

    model_config = ConfigDict(extra="allow")
    type: Literal["text"] = "text"
    text: Text = ""


class Message(BaseModel):
    model_config = ConfigDict(extra="allow")
    role: Literal["system", "user", "assistant"]
    content: Text | Annotated[list[Part], Field(max_length=MAX_ITEMS)] | None = None


ChatNumber = StrictInt | Finite
History = Annotated[list[Message | Annotated[list[Text | None], Field(max_length=2)]], Field(max_length=MAX_ITEMS)]

# The typed endpoints' arguments by endpoint and parameter; a parameter not named here is shape-checked only.
ENDPOINT_TYPES: dict[str, dict[str, Any]] = {
    "train_start": {"config": Options},
    "train_status": {"run_id": Id},
    "train_abort": {"run_id": Id},
    "train_resume": {"run_id": Id, "overrides": Options | None},
    "model_info": {"config": Options | None},
    "chat": {
        "target": PathText,
        "message": Text,
        "history": History | None,
        "system_prompt": Text | None,
        "temperature": Annotated[ChatNumber, Field(ge=CHAT["temperature"][0], le=CHAT["temperature"][1])],
        "top_p": Annotated[ChatNumber, Field(ge=CHAT["top_p"][0], le=CHAT["top_p"][1])],
        "max_new_tokens": Annotated[StrictInt, Field(ge=CHAT["max_new_tokens"][0], le=CHAT["max_new_tokens"][1])],
        "images": Annotated[list[PathText], Field(max_length=16)] | None,
    },
    "evaluate": {"run_id": Id, "dataset": PathText | None},
    "export": {"run_id": Id, "options": Options | None},
    "sweep_start": {"spec": SweepSpec},
    "sweep_status": {"sweep_id": Id},
    "sweep_abort": {"sweep_id": Id},
    "reward_score": {"run_id": Id, "message": Text, "reply": Text, "history": History | None},
    "recipe_start": {"spec": JobSpec},
    "recipe_status": {"recipe_id": Id},
    "recipe_abort": {"recipe_id": Id},
    "recipe_resume": {"recipe_id": Id, "api_key": Key},
    "benchmark_start": {"request": JobSpec},
    "benchmark_status": {"benchmark_id": Id},
    "judge_start": {"request": JobSpec},
    "judge_status": {"judge_id": Id},
    "evaluation_abort": {"job_id": Id},
    "evaluation_resume": {"job_id": Id, "api_key": Key},
}
_ADAPTERS: dict[tuple[str, str], TypeAdapter] = {}


def check_arguments(endpoint: str, arguments: dict[str, Any]) -> None:
    """Refuse, in one line naming the argument, a value of the wrong type, size or range for `endpoint`."""
    for name, kind in ENDPOINT_TYPES.get(endpoint, {}).items():
        if name not in arguments:
            continue
        adapter = _ADAPTERS.get((endpoint, name)) or _ADAPTERS.setdefault((endpoint, name), TypeAdapter(kind))
        try:
            adapter.validate_python(arguments[name], strict=True)
        except _ValidationError as exc:
            raise TuneForgeError(f"{endpoint}: {name}{_where(exc)}") from None


def _where(exc: _ValidationError) -> str:
    """The most telling error, located: '.history[0].role: Input should be ...', never quoting the value.

    A union (text or number or ...) fails once per member; a value error (too long, too large, not finite)
    says more than "should be a valid string", so it is preferred, else the input's type is named."""
    errors = exc.errors(include_url=False)
    telling = [e for e in errors if not e["type"].endswith("_type")]
    chosen = telling[0] if telling else errors[0]
    place = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in chosen.get("loc", ()) if not _is_union(p))
    words = chosen.get("msg", "invalid") if telling else f"wrong type (got {_kind(chosen.get('input'))})"
    return f"{place}: {words}"


def _kind(value: Any) -> str:
    """A value's type as a JSON caller knows it."""
    kinds = {type(None): "null", bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list"}
    return "a mapping" if isinstance(value, dict) else kinds.get(type(value), type(value).__name__)


def _is_union(part: Any) -> bool:
    """pydantic names the member of a union it tried ('str', 'list[...]', 'Message'); the place is what matters."""
    return isinstance(part, str) and (
        "[" in part or part[:1].isupper() or part in ("str", "int", "float", "bool", "none", "constrained-str")
    )


def shape(value: Any, where: str = "input") -> None:
    """Refuse a payload too big, too deep, too long, or holding a number that is not finite, in one line."""
    total, stack = 0, [(value, where, 0)]
    while stack:
        item, place, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise TuneForgeError(f"{place}: nested more than {MAX_DEPTH} deep")
        if isinstance(item, str):
            if len(item) > MAX_TEXT:
                raise TuneForgeError(f"{place}: {len(item):,} characters of text (at most {MAX_TEXT:,})")
            total += len(item.encode("utf-8", errors="replace"))
        elif isinstance(item, float):
            if not math.isfinite(item):
                raise TuneForgeError(f"{place}: {item} is not a finite number")
            total += 8
        elif isinstance(item, int) and not isinstance(item, bool):
            if abs(item) > 2**63:
                raise TuneForgeError(f"{place}: {str(item)[:20]}… is too large a number")
            total += 8
        elif isinstance(item, (list, tuple, dict)):
            if len(item) > MAX_ITEMS:
                raise TuneForgeError(f"{place}: {len(item):,} items (at most {MAX_ITEMS:,})")
            pairs = item.items() if isinstance(item, dict) else enumerate(item)
            for key, inner in pairs:
                if isinstance(key, str):
                    stack.append((key, f"{place} key", depth + 1))
                stack.append((inner, f"{place}.{str(key)[:40]}" if isinstance(item, dict) else f"{place}[{key}]",
                              depth + 1))  # fmt: skip
        if total > MAX_PAYLOAD:
            raise TuneForgeError(f"{where}: more than {MAX_PAYLOAD >> 20} MiB in one call")
