"""Inside a judge job: both models answer the held-out prompts, then the judge compares each pair.

The answers of a model are saved (answers-<model>.json) before the judge is asked anything, and
each judged prompt is an event, so a resumed job neither generates nor judges anything twice.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from backend.events import EventLog, read_events

API_KEY_ENV = "TUNEFORGE_JUDGE_API_KEY"


def run_judge(spec: dict[str, Any], folder: Path, events: EventLog) -> list[dict[str, Any]]:
    from backend.evaluation.judge import JudgeClient, judged_row

    client = JudgeClient({**spec["judge"], "api_key": os.environ.get(API_KEY_ENV, "")})
    client.check()
    answers = [model_answers(m, i, spec, folder, events) for i, m in enumerate(spec["models"])]
    judged = {e["index"]: e["row"] for e in read_events(folder) if e["type"] == "row"}
    rows = []
    total = len(spec["prompts"])
    for index, messages in enumerate(spec["prompts"]):
        if index not in judged:
            prompt = _prompt_text(messages)
            judged[index] = judged_row(client, prompt, answers[0][index], answers[1][index])
            events.emit("row", index=index, row=judged[index])
        rows.append(judged[index])
        events.emit("progress", model="judge", model_index=2, models=3, done=index + 1, total=total)
    return rows


def model_answers(model: dict[str, Any], index: int, spec: dict[str, Any], folder: Path, events) -> list[str]:
    from backend.evaluation.evaluate import generate_rows

    saved = folder / f"answers-{re.sub(r'[^0-9A-Za-z_.-]+', '_', model['name'])}.json"
    if saved.exists():
        return json.loads(saved.read_text(encoding="utf-8"))
    loaded, tokenizer = load_generator(model)
    chats = [{"messages": [*m[: _last_answer(m)], {"role": "assistant", "content": ""}]} for m in spec["prompts"]]

    def progress(done, total, eta):
        events.emit("progress", model=model["name"], model_index=index, models=3, done=done, total=total)

    rows = generate_rows(loaded, tokenizer, chats, spec["max_new_tokens"], 0.0, progress, need_reference=False)
    answers = [r["prediction"] for r in rows]
    saved.write_text(json.dumps(answers, ensure_ascii=False), encoding="utf-8")
    return answers


def load_generator(model: dict[str, Any]):
    """(model, tokenizer) for one of the spec's models, as eval_jobs.model_spec resolved it."""
    from backend.models.sources import load_causal_lm, load_tokenizer

    tokenizer = load_tokenizer(model.get("tokenizer") or model["pretrained"], model.get("template", "chatml"))
    loaded = load_causal_lm(model["pretrained"])
    if model.get("peft"):
        from peft import PeftModel

        loaded = PeftModel.from_pretrained(loaded, model["peft"])
    return loaded.eval(), tokenizer


def _last_answer(messages: list[dict]) -> int:
    """Where the reference answer starts: the prompt is everything before it."""
    answers = [i for i, m in enumerate(messages) if m["role"] == "assistant"]
    return answers[-1] if answers else len(messages)


def _prompt_text(messages: list[dict]) -> str:
    users = [m["content"] for m in messages[: _last_answer(messages)] if m["role"] == "user"]
    return users[-1] if users else ""
