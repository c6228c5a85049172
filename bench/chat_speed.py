"""Benchmark: chat latency and speed against raw `model.generate`, for the embedded default on CPU.

Measures, through the same ChatEngine the Chat tab and API use:
  - the time to the first streamed text of a reply, with the model already loaded;
  - generated tokens/s, against model.generate on the same prompt (greedy, KV cache on);
  - the time to load the model for a first message, and for the next (cached) one.
Usage: python bench/chat_speed.py   (prints JSON)
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "Write a short paragraph about rivers and why they matter to people."
NEW_TOKENS = 128


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backend.runs.manager import JobManager
    from backend.serving.chat import ChatEngine

    engine = ChatEngine(JobManager(Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))))
    began = time.perf_counter()
    engine.reply("base", "Hi", max_new_tokens=1, temperature=0.0)
    first_load_s = time.perf_counter() - began
    began = time.perf_counter()
    engine.reply("base", "Hi", max_new_tokens=1, temperature=0.0)
    cached_s = time.perf_counter() - began

    first_text_s, text = None, ""
    began = time.perf_counter()
    for text in engine.stream("base", PROMPT, [], temperature=0.0, max_new_tokens=NEW_TOKENS):
        if first_text_s is None and text.strip():
            first_text_s = time.perf_counter() - began
    chat_s = time.perf_counter() - began
    with engine.model_for("base") as (model, tokenizer):
        chat_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        raw_s = time.perf_counter() - began
        raw_tokens = out.shape[1] - inputs["input_ids"].shape[1]
    chat_speed, raw_speed = chat_tokens / chat_s, raw_tokens / raw_s
    print(
        json.dumps(
            {
                "benchmark": "chat_speed",
                "first_text_s": round(first_text_s, 3),
                "chat_tokens_per_s": round(chat_speed, 1),
                "raw_generate_tokens_per_s": round(raw_speed, 1),
                "chat_vs_raw": round(chat_speed / raw_speed, 2),
                "tokens": {"chat": chat_tokens, "raw": raw_tokens},
                "first_message_load_s": round(first_load_s, 2),
                "next_message_overhead_s": round(cached_s, 3),
                "threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
