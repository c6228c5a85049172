"""What a generator is asked for each kind of row, and how its answers become one row.

Each call asks for one plain text (a question, an answer, a summary), never for JSON: small local models
rarely write valid JSON, and a row built from several plain answers fails only where one answer is empty or
a refusal, which is retried alone. Templates are editable; `{chunk}`, `{source}`, `{example}` (the few-shot
example), `{question}`, `{instruction}` and `{conversation}` are filled in, and any other `{...}` is left as
written, so braces in a person's template or in a document are never a problem.
"""

from __future__ import annotations

import re
from collections.abc import Callable

from backend.errors import TuneForgeError

KINDS = ("qa", "instruction", "summary", "chat", "preference")
SUMMARY_INSTRUCTION = "Summarize the following text."

TEMPLATES = {
    "question": (
        "Read the text below, taken from {source}.\n\n{chunk}\n\n"
        "Write one question that this text answers. Write only the question.\n\nExample: {example}"
    ),
    "answer": (
        "Answer the question using only the text below, taken from {source}.\n\n{chunk}\n\n{conversation}"
        "Question: {question}\n\nWrite only the answer, in full sentences.\n\nExample of the style: {example}"
    ),
    "instruction": (
        "Read the text below, taken from {source}.\n\n{chunk}\n\n"
        "Write one task a user could ask an assistant to do with this text (explain, compare, list, rewrite). "
        "Write only the task.\n\nExample: {example}"
    ),
    "response": (
        "Do the task below using the text, taken from {source}.\n\n{chunk}\n\nTask: {instruction}\n\n"
        "Write only the response.\n\nExample of the style: {example}"
    ),
    "summary": (
        "Summarize the text below, taken from {source}, in two to four sentences. Write only the summary.\n\n"
        "{chunk}\n\nExample of the style: {example}"
    ),
    "followup": (
        "Here is a conversation about the text below, taken from {source}.\n\n{chunk}\n\n{conversation}"
        "Write the user's next question, which follows up on the answer. Write only the question.\n\n"
        "Example: {example}"
    ),
    "worse": (
        "Answer the question briefly, from memory, without looking anything up.\n\nQuestion: {question}\n\n"
        "Write only the answer.\n\nExample of the style: {example}"
    ),
}
EXAMPLES = {
    "question": "How long is the warranty on a replacement battery?",
    "answer": "A replacement battery is covered for 12 months from the date of purchase.",
    "instruction": "List the steps for resetting the device to factory settings.",
    "response": "1. Turn the device off. 2. Hold the power and volume buttons for ten seconds. 3. Confirm the reset.",
    "summary": "The section explains who may request a refund, within what time, and how to send the request.",
    "followup": "Does that also apply to items bought on sale?",
    "worse": "Probably about a year.",
}
STEPS_OF_KIND = {
    "qa": ("question", "answer"),
    "instruction": ("instruction", "response"),
    "summary": ("summary",),
    "chat": ("question", "answer", "followup"),
    "preference": ("question", "answer", "worse"),
}
ONE_LINE = ("question", "instruction", "followup")  # asked for one line: the rest of a reply is chatter
LABELS = "question|q|answer|a|instruction|task|response|summary|user|assistant"
LABEL = re.compile(rf"^\s*(?:\*\*)?(?:{LABELS})\s*[:：]\s*(?:\*\*)?\s*", re.IGNORECASE)
REFUSAL = re.compile(r"^\s*(?:I'?m sorry|I am sorry|I cannot|I can't|As an AI\b)", re.IGNORECASE)
MAX_TEMPLATE_CHARS = 20000
PLACEHOLDER = re.compile(r"\{(\w+)\}")


class MalformedOutput(Exception):
    """A reply that cannot be part of a row (empty, or a refusal): the call is retried."""


def fill(template: str, values: dict[str, str]) -> str:
    return PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), template)


def clean(text: str, step: str) -> str:
    """The reply without labels, quotes and chatter; MalformedOutput when nothing usable is left."""
    text = (text or "").strip()
    if REFUSAL.match(text):
        raise MalformedOutput("the generator refused")
    text = LABEL.sub("", text, count=1).strip()
    if step in ONE_LINE:
        text = next((line.strip() for line in text.splitlines() if line.strip()), "")
        text = LABEL.sub("", text, count=1).strip()
    text = text.strip().strip('"“”').strip()
    if not text:
        raise MalformedOutput("empty reply")
    return text


# ask(step, extra placeholder values) -> the cleaned reply; it retries and raises when it gives up.
Ask = Callable[[str, dict], str]


def make_row(kind: str, ask: Ask, chunk_text: str) -> dict:
    """One row of the kind, built from the generator's replies (the source is added by the caller)."""
    if kind == "qa":
        question = ask("question", {})
        return {"instruction": question, "input": "", "output": ask("answer", {"question": question})}
    if kind == "instruction":
        task = ask("instruction", {})
        return {"instruction": task, "input": "", "output": ask("response", {"instruction": task})}
    if kind == "summary":
        return {"instruction": SUMMARY_INSTRUCTION, "input": chunk_text, "output": ask("summary", {})}
    if kind == "chat":
        return {"messages": _conversation(ask)}
    if kind == "preference":
        question = ask("question", {})
        chosen = ask("answer", {"question": question})
        return {
            "instruction": question,
            "input": "",
            "chosen": chosen,
            "rejected": ask("worse", {"question": question}),
        }
    raise TuneForgeError(f"kind {kind!r}: use one of {', '.join(KINDS)}")


def _conversation(ask: Ask, turns: int = 2) -> list[dict]:
    messages: list[dict] = []
    for turn in range(turns):
        so_far = _as_text(messages)
        question = ask("question" if turn == 0 else "followup", {"conversation": so_far})
        answer = ask("answer", {"question": question, "conversation": so_far})
        messages += [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    return messages


def _as_text(messages: list[dict]) -> str:
    if not messages:
        return ""
    lines = [f"{m['role'].capitalize()}: {m['content']}" for m in messages]
    return "Conversation so far:\n" + "\n".join(lines) + "\n\n"


def answers_of(row: dict) -> list[str]:
    """The texts a row trains the model to write: what must be grounded in the chunk."""
    if "messages" in row:
        return [m["content"] for m in row["messages"] if m.get("role") == "assistant"]
    return [str(row.get("output") or row.get("chosen") or "")]


def row_text(row: dict) -> str:
    """The row's whole text, prompts and answers: what duplicates are judged on."""
    if "messages" in row:
        return "\n".join(m["content"] for m in row["messages"])
    return "\n".join(str(row.get(k) or "") for k in ("instruction", "input", "output", "chosen", "rejected"))


def check_templates(templates: dict, examples: dict) -> None:
    for key in [*templates, *examples]:
        if key not in TEMPLATES:
            raise TuneForgeError(f"template {key!r}: there is no such step (steps: {', '.join(TEMPLATES)})")
    for key, text in {**templates, **examples}.items():
        if not isinstance(text, str) or not text.strip() or len(text) > MAX_TEMPLATE_CHARS:
            raise TuneForgeError(f"template {key!r}: must be a non-empty text of at most {MAX_TEMPLATE_CHARS} chars")
    for key, text in templates.items():
        if "{chunk}" not in text and key != "worse":
            raise TuneForgeError(f"template {key!r}: must contain {{chunk}}, or the row is not about the document")
