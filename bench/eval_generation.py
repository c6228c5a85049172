"""Benchmark: the Evaluate tab's answers, one prompt at a time against eight at a time, on the embedded SmolLM2.

The same generate_answers the Evaluate tab, batch predict and the judge use, greedy, on the demo_identity
questions, with the model loaded as the Chat tab loads it (float32). Reports seconds and answers/s for each
batch size, and how many answers came out the same (left padding may move a near-tie).
Usage: python bench/eval_generation.py [ROWS] [NEW_TOKENS]   (prints JSON; default 16 rows, 64 tokens)
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from backend.data import DataOptions, ExampleReader
    from backend.evaluation.generation import generate_answers
    from backend.models.sources import default_model_dir

    rows = int(sys.argv[1]) if len(sys.argv) > 1 else 16
    new_tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 64
    folder = default_model_dir(progress=lambda msg: None)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32).eval()
    examples = list(ExampleReader("demo_identity", DataOptions(dataset="demo_identity")))[:rows]
    prompts = [[m for m in e["messages"] if m["role"] != "assistant"] for e in examples]
    generate_answers(model, tokenizer, prompts[:1], 4)  # warm-up
    result = {"machine": platform.processor() or platform.machine(), "threads": torch.get_num_threads()}
    result.update(rows=len(prompts), max_new_tokens=new_tokens)
    answers = {}
    for batch in (1, 8):
        began = time.perf_counter()
        answers[batch] = generate_answers(model, tokenizer, prompts, new_tokens, batch_size=batch)
        seconds = time.perf_counter() - began
        result[f"batch_{batch}"] = {"seconds": round(seconds, 2), "answers_per_s": round(len(prompts) / seconds, 2)}
    result["speedup"] = round(result["batch_1"]["seconds"] / result["batch_8"]["seconds"], 2)
    result["same_answers"] = sum(a == b for a, b in zip(answers[1], answers[8], strict=True))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
