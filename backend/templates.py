"""Chat formatting: turn messages into token ids, with prompt tokens masked from the loss.

The model's own chat template is used. A model without one gets a documented fallback
(`TrainConfig.template`, ChatML by default), so chat at inference time looks exactly like
the text it was trained on.
"""

from __future__ import annotations

from backend.errors import TuneForgeError

IGNORE_INDEX = -100  # what transformers' loss skips

FALLBACK_TEMPLATES = {
    # ChatML, as used by SmolLM2, Qwen and many others.
    "chatml": (
        "{% for message in messages %}"
        "{{ '<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n' }}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
    ),
    "llama2": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<<SYS>>\n' + message['content'] + '\n<</SYS>>\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '[INST] ' + message['content'] + ' [/INST]' }}"
        "{% else %}{{ ' ' + message['content'] + eos_token }}{% endif %}"
        "{% endfor %}"
    ),
    "alpaca": (
        "{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ message['content'] + '\n\n' }}"
        "{% elif message['role'] == 'user' %}{{ '### Instruction:\n' + message['content'] + '\n\n' }}"
        "{% else %}{{ '### Response:\n' + message['content'] + eos_token + '\n\n' }}{% endif %}"
        "{% endfor %}"
        "{% if add_generation_prompt %}{{ '### Response:\n' }}{% endif %}"
    ),
}


def ensure_chat_template(tokenizer, fallback: str = "chatml") -> None:
    """Give a tokenizer without a chat template the named fallback, and a pad token if missing."""
    if not getattr(tokenizer, "chat_template", None):
        tokenizer.chat_template = FALLBACK_TEMPLATES[fallback]
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token


def render(tokenizer, messages: list[dict[str, str]], add_generation_prompt: bool = False) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt)


def answer_spans(tokenizer, messages: list[dict[str, str]]) -> tuple[str, list[tuple[int, int]]]:
    """The rendered conversation and the character spans of each assistant answer.

    A span runs from the end of the rendered prompt (generation prompt included) to the end
    of that turn, so the end-of-turn marker is trained too and the model learns to stop.
    """
    text = render(tokenizer, messages)
    spans = []
    for i, message in enumerate(messages):
        if message["role"] != "assistant":
            continue
        prompt = render(tokenizer, messages[:i], add_generation_prompt=True)
        upto = render(tokenizer, messages[: i + 1])
        if not (text.startswith(prompt) and text.startswith(upto) and upto.startswith(prompt)):
            raise TuneForgeError(
                "this model's chat template renders earlier turns differently in later ones, "
                "so answers cannot be located for masking; choose another model or template"
            )
        spans.append((len(prompt), len(upto)))
    return text, spans


def encode_conversation(tokenizer, messages: list[dict[str, str]], cutoff_len: int) -> dict[str, list[int]]:
    """Token ids and labels where every token outside an assistant answer is IGNORE_INDEX."""
    text, spans = answer_spans(tokenizer, messages)
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
        return encode_conversation(tokenizer, example["messages"], cutoff_len)
    return encode_text(tokenizer, example["text"], cutoff_len)
