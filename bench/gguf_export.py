"""Benchmark: the embedded SmolLM2-135M written as GGUF of each type, then read back and compared.

For each type: seconds to write, file size, and the read-back check the Export tab runs (largest logit
difference, relative to the largest logit, and next-token agreement on a fixed chat), plus a greedy
20-token answer from the read-back file against the model's own. Prints JSON.
Usage: python bench/gguf_export.py
"""

from __future__ import annotations

import json
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def greedy(folder: Path, **loading) -> str:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(folder, **loading)
    model = AutoModelForCausalLM.from_pretrained(folder, dtype=torch.float32, **loading)
    chat = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tokenizer.apply_chat_template(chat, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=20, do_sample=False)
    return tokenizer.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)


def main() -> None:
    from backend.models import default_model_dir
    from backend.serving.gguf_export import GGUF_TYPES, verify_gguf, write_gguf

    model_dir = default_model_dir(progress=lambda msg: None)
    own = greedy(model_dir)
    results = {"machine": platform.processor() or platform.machine(), "model": model_dir.name, "greedy": own}
    with tempfile.TemporaryDirectory() as tmp:
        for gguf_type in GGUF_TYPES:
            path = Path(tmp) / f"smollm2-{gguf_type}.gguf"
            began = time.perf_counter()
            write_gguf(model_dir, path, gguf_type)
            written = time.perf_counter() - began
            check = verify_gguf(model_dir, path, gguf_type)
            answer = greedy(path.parent, gguf_file=path.name)
            results[gguf_type] = {
                "write_s": round(written, 1),
                "size_mb": round(path.stat().st_size / 1e6, 1),
                **{k: check[k] for k in ("relative_diff", "max_logit_diff", "top1_agreement", "passed")},
                "greedy_same": answer == own,
            }
            path.unlink()
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
