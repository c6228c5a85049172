"""Benchmark: chat latency and speed on both engines, transformers and llama.cpp, for the embedded default on CPU.

Measures, through the same ChatEngine the Chat tab and API use, for each engine and file:
  - the time to the first streamed text of a reply, with the model already loaded;
  - generated tokens/s of a greedy reply;
  - the time to load the model for a first message.
transformers runs the embedded SmolLM2-135M (float32, as the studio trains it); llama.cpp (llama-server, built
by `make llamacpp`) runs it as the f16 and q4_k_m GGUF that the Export tab writes, and the Q4_1 GGUF the
package ships. For transformers, raw `model.generate` on the same prompt too (greedy, KV cache on).
Usage: python bench/chat_speed.py   (prints JSON)
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
PROMPT = "Write a short paragraph about rivers and why they matter to people."
NEW_TOKENS = 128


def measure(engine, target: str, tokenizer) -> dict:
    began = time.perf_counter()
    engine.reply(target, "Hi", max_new_tokens=1, temperature=0.0)
    load_s = time.perf_counter() - began
    first_text_s, text = None, ""
    began = time.perf_counter()
    for text in engine.stream(target, PROMPT, [], temperature=0.0, max_new_tokens=NEW_TOKENS):
        if first_text_s is None and text.strip():
            first_text_s = time.perf_counter() - began
    chat_s = time.perf_counter() - began
    tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    return {
        "first_text_s": round(first_text_s, 3),
        "tokens_per_s": round(tokens / chat_s, 1),
        "tokens": tokens,
        "first_message_load_s": round(load_s, 2),
    }


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    from backend.models.sources import DEFAULT_GGUF_FILE, default_model_dir, embedded_gguf_dir
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.serving.gguf_export import reference_path, write_gguf

    work = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    engine = ChatEngine(JobManager(work / "workspace"))
    q4 = write_gguf(default_model_dir(), work / "smollm2-q4_k_m.gguf", "q4_k_m")
    f16 = reference_path(q4).rename(work / "smollm2-f16.gguf")  # the f16 it was quantized from
    files = {
        "f16 (Export tab)": f16,
        "q4_k_m (Export tab)": q4,
        "Q4_1 (shipped)": embedded_gguf_dir() / DEFAULT_GGUF_FILE,
    }
    results = {}
    with engine.model_for("base") as (model, tokenizer):
        pass
    results["transformers fp32"] = measure(engine, "base", tokenizer)
    with engine.model_for("base") as (model, tokenizer):
        inputs = tokenizer.apply_chat_template(
            [{"role": "user", "content": PROMPT}], add_generation_prompt=True, return_tensors="pt", return_dict=True
        )
        began = time.perf_counter()
        with torch.no_grad():
            out = model.generate(**inputs, max_new_tokens=NEW_TOKENS, do_sample=False)
        raw_s = time.perf_counter() - began
    results["transformers fp32"]["raw_generate_tokens_per_s"] = round(
        (out.shape[1] - inputs["input_ids"].shape[1]) / raw_s, 1
    )
    for name, path in files.items():
        results[f"llama.cpp {name}"] = {**measure(engine, f"gguf:{path}", tokenizer), "size_mb": round(
            path.stat().st_size / 1024**2, 1)}  # fmt: skip
    engine.unload_gguf()
    print(
        json.dumps(
            {
                "benchmark": "chat_speed",
                "model": "SmolLM2-135M-Instruct",
                "new_tokens": NEW_TOKENS,
                "engines": results,
                "cpu": platform.processor() or platform.machine(),
                "cores": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
