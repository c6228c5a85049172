"""Chat formatting: turn messages into token ids, with prompt tokens masked from the loss.

The model's own chat template is used. A model without one gets a documented fallback
(`TrainConfig.template`, ChatML by default), so chat at inference time looks exactly like
the text it was trained on. Tool-call conversations need a template that renders tools, calls
and results; one that would drop or garble them is refused with the reason, never trained on.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError

IGNORE_INDEX = -100  # what transformers' loss skips

# The fallbacks, for models without a chat template of their own (base models), named as in LLaMA-Factory.
#
# Each renders a conversation so that every shorter conversation renders to a prefix of it:
# answer_spans() locates the answers by that property. So a system message is rendered where it
# stands, or folded into the first user turn where the format has no system role (never into a
# later one), and no turn's text depends on the turns after it.
#
# An answer ends with the format's end-of-turn marker and then the tokenizer's eos token, unless the
# marker is that token: a base model's tokenizer often knows the marker only as text, and generation
# stops at eos, so the model learns to stop where chat stops it.
_SYSTEM_FIRST = (  # system: the leading system message's text; turns: the messages after it
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = '' %}{% set turns = messages %}{% endif %}"
)
_BOS = "{% if bos_token %}{{ bos_token }}{% endif %}"
_EOS = "{% if eos_token %}{{ eos_token }}{% endif %}"


def _answer_end(marker: str) -> str:
    return "{{ '" + marker + "' }}{% if eos_token and eos_token != '" + marker + "' %}{{ eos_token }}{% endif %}"


def _turn_end(marker: str) -> str:
    """The marker after a message: an answer's also gets eos (see above)."""
    return (
        "{% if message['role'] == 'assistant' %}" + _answer_end(marker) + "{% else %}{{ '" + marker + "' }}{% endif %}"
    )


def _content_with_system(prefix: str, suffix: str) -> str:
    """Sets `content`: the message's text, with the system text (wrapped in prefix, suffix) opening the first turn."""
    return (
        "{% set content = message['content'] %}"
        "{% if loop.first and system and message['role'] == 'user' %}"
        "{% set content = '" + prefix + "' + system + '" + suffix + "' + content %}"
        "{% endif %}"
    )


FALLBACK_TEMPLATES = {
    # ChatML, as used by SmolLM2, Qwen and many others.
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] }}" + _turn_end("<|im_end|>") + "{{ '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    # Llama 2 chat: each exchange is bos [INST] ... [/INST] answer eos; the system text sits in <<SYS>> in the first.
    "llama2": (
        _SYSTEM_FIRST
        + "{% for message in turns %}"
        + _content_with_system("<<SYS>>\n", "\n<</SYS>>\n\n")
        + "{% if message['role'] == 'user' %}"
        + _BOS
        + "{{ '[INST] ' + content + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ ' ' + content + ' ' }}" + _EOS + "{% endif %}"
        "{% endfor %}"
    ),
    # Mistral Instruct: one bos, [INST] ... [/INST] round each user turn, the system text opening the first.
    "mistral": (
        _SYSTEM_FIRST
        + _BOS
        + "{% for message in turns %}"
        + _content_with_system("", "\n\n")
        + "{% if message['role'] == 'user' %}{{ '[INST] ' + content + ' [/INST]' }}"
        "{% elif message['role'] == 'assistant' %}{{ content }}" + _EOS + "{% endif %}"
        "{% endfor %}"
    ),
    # Gemma: user and model turns, no system role: the system text opens the first user turn.
    "gemma": (
        _SYSTEM_FIRST
        + _BOS
        + "{% for message in turns %}"
        + _content_with_system("", "\n\n")
        + "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
        "{{ '<start_of_turn>' + role + '\n' + content }}" + _turn_end("<end_of_turn>") + "{{ '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<start_of_turn>model\n' }}{% endif %}"
    ),
    # Llama 3: a header naming each message's role, <|eot_id|> after each.
    "llama3": (
        _BOS + "{% for message in messages %}"
        "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\n\n' + message['content'] }}"
        + _turn_end("<|eot_id|>")
        + "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\n\n' }}{% endif %}"
    ),
    # Phi-3: <|system|>, <|user|> and <|assistant|> turns, each closed by <|end|>.
    "phi3": (
        "{% for message in messages %}"
        "{{ '<|' + message['role'] + '|>\n' + message['content'] }}" + _turn_end("<|end|>") + "{{ '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|assistant|>\n' }}{% endif %}"
    ),
    # Alpaca: instruction and response sections, for base models tuned on instruction data.
    "alpaca": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
}
TEMPLATE_NAMES = tuple(FALLBACK_TEMPLATES)  # the `template` option's choices
# The fallbacks' end-of-turn markers. A base model's tokenizer that knows one only as text shows it in a
# reply, and a model may write on past it into a next turn: a reply ends where its marker is.
TURN_END_MARKERS = ("<|im_end|>", "<end_of_turn>", "<|eot_id|>", "<|end|>")
OWN_TEMPLATE = "own"  # what template_in_use says of a model's own chat template


def ensure_chat_template(tokenizer, fallback: str = "chatml") -> None:
    """Give a tokenizer without a chat template the named fallback, and a pad token if missing."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATES[fallback]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def cut_at_turn_end(text: str) -> tuple[str, bool]:
    """The reply up to the first end-of-turn marker written as text, and whether there was one."""
    ends = [text.index(marker) for marker in TURN_END_MARKERS if marker in text]
    return (text[: min(ends)], True) if ends else (text, False)


def template_in_use(tokenizer, fallback: str) -> str:
    """OWN_TEMPLATE, or the fallback's name where ensure_chat_template gave the tokenizer that fallback.

    A model saved by an earlier run with a fallback carries that fallback's text: it is named too.
    """
    return fallback if tokenizer.chat_template == FALLBACK_TEMPLATES.get(fallback) else OWN_TEMPLATE


# A tiny tool-use conversation: a template that knows tools shows all three markers when rendering it.
PROBE_SCHEMA = {
    "type": "object",
    "properties": {"x": {"type": "integer", "description": "a number"}},
    "required": ["x"],
}
PROBE_TOOLS = [
    {"type": "function", "function": {"name": "tf_probe_tool", "description": "probe", "parameters": PROBE_SCHEMA}}
]
PROBE_CALL = {"id": "call00010", "type": "function", "function": {"name": "tf_probe_call", "arguments": {"x": 1}}}
PROBE_MESSAGES = [
    {"role": "user", "content": "probe"},
    {"role": "assistant", "content": "", "tool_calls": [PROBE_CALL]},
    {"role": "tool", "content": "tf_probe_result", "tool_call_id": "call00010", "name": "tf_probe_call"},
    {"role": "assistant", "content": "done"},
]
PROBE_MARKERS = {"the tools list": "tf_probe_tool", "tool calls": "tf_probe_call", "tool results": "tf_probe_result"}


def render(tokenizer, messages: list[dict], add_generation_prompt: bool = False, tools: list | None = None) -> str:
    return tokenizer.apply_chat_template(
        messages, tools=tools or None, tokenize=False, add_generation_prompt=add_generation_prompt
    )


def tool_template_problem(tokenizer) -> str | None:
    """What this tokenizer's chat template does wrong with tool use, or None when it renders all of it."""
    try:
        text = render(tokenizer, PROBE_MESSAGES, tools=PROBE_TOOLS)
    except Exception as exc:  # noqa: BLE001 - templates raise their own errors (raise_exception, jinja)
        return f"fails on tool turns ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
    dropped = [what for what, marker in PROBE_MARKERS.items() if marker not in text]
    if not dropped:
        return None
    listed = dropped[0] if len(dropped) == 1 else ", ".join(dropped[:-1]) + " and " + dropped[-1]
    return f"has no tool calling: it drops {listed}"


def check_tool_template(tokenizer) -> None:
    problem = tool_template_problem(tokenizer)
    if problem:
        model = Path(getattr(tokenizer, "name_or_path", "") or "this model").name
        raise TuneForgeError(
            f"this dataset has tool calls (function_call/observation turns or a tools column), but {model}'s "
            f"chat template {problem}; pick a model whose chat template supports tools (for example "
            "Qwen2.5-Instruct), or remove the tool turns from the data"
        )


def answer_spans(tokenizer, messages: list[dict], tools: list | None = None) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant answer (tool calls included).

    A span runs from the end of the rendered prompt (generation prompt included) to the end
    of that turn, so the end-of-turn marker is trained too and the model learns to stop.
    """
    text = render(tokenizer, messages, tools=tools)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True, tools=tools)
        upto = render(tokenizer, messages[: i + 1], tools=tools)
        if not (text.startswith(prompt) and text.startswith(upto) and upto.startswith(prompt)):
            raise TuneForgeError(
                "this model's chat template renders earlier turns differently in later ones, "
                "so answers cannot be located for masking; choose another model or template"
            )
        spans.append((len(prompt), len(upto)))
    return text, spans


def encode_conversation(
    tokenizer, messages: list[dict], cutoff_len: int, tools: list | None = None
) -> dict[str, list[int]]:
    """Token ids and labels where every token outside an assistant answer is IGNORE_INDEX."""
    text, spans = answer_spans(tokenizer, messages, tools)
    encoded = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    labels = []
    for token_id, (start, _end) in zip(encoded["input_ids"], encoded["offset_mapping"], strict=True):
        trained = any(s <= start < e for s, e in spans)
        labels.append(token_id if trained else IGNORE_INDEX)
    input_ids = encoded["input_ids"][:cutoff_len]
    return {"input_ids": input_ids, "labels": labels[:cutoff_len], "attention_mask": [1] * len(input_ids)}


def encode_text(tokenizer, text: str, cutoff_len: int) -> dict[str, list[int]]:
    """Plain text for continued pretraining: every token is trained, and EOS marks the document's end."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if tokenizer.eos_token_id is not None:
        ids = ids + [tokenizer.eos_token_id]
    ids = ids[:cutoff_len]
    return {"input_ids": ids, "labels": list(ids), "attention_mask": [1] * len(ids)}


def encode_example(tokenizer, example: dict, cutoff_len: int) -> dict[str, list[int]]:
    if "messages" in example:
        if uses_tools(example):
            check_tool_template(tokenizer)
        return encode_conversation(tokenizer, example["messages"], cutoff_len, example.get("tools"))
    return encode_text(tokenizer, example["text"], cutoff_len)


def uses_tools(example: dict[str, Any]) -> bool:
    """True when rendering this example needs a chat template that knows tools (lives here, with the template
    that must know them, so that templates import nothing from backend.data)."""
    return bool(example.get("tools")) or any(
        m.get("tool_calls") or m["role"] == "tool" for m in example.get("messages", [])
    )
