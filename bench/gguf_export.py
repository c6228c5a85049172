"""Benchmark: the embedded SmolLM2-135M exported as GGUF of each type by llama.cpp, and checked in llama.cpp.

For each type: seconds to write (convert, and quantize from the f16), file size (and its share of f16's),
and the check the Export tab runs: greedy tokens of a fixed chat agreeing with transformers' float32 model,
and llama.cpp's perplexity of the file and of f16 on the bundled general text. Prints JSON.
Usage: python bench/gguf_export.py
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


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from backend.models.sources import default_model_dir
    from backend.serving import llamacpp
    from backend.serving.gguf_export import GENERAL_TEXT, GGUF_TYPES, verify, write_gguf

    model = default_model_dir()
    work = Path(tempfile.mkdtemp(prefix="tuneforge-gguf-"))
    began = time.perf_counter()
    f16 = write_gguf(model, work / "m-f16.gguf", "f16")
    times = {"f16": time.perf_counter() - began}
    files = {"f16": f16}
    for gguf_type in GGUF_TYPES:
        if gguf_type == "f16":
            continue
        began = time.perf_counter()
        if gguf_type == "bf16":
            files[gguf_type] = write_gguf(model, work / "m-bf16.gguf", "bf16")
        else:
            files[gguf_type] = llamacpp.quantize(f16, work / f"m-{gguf_type}.gguf", gguf_type)
        times[gguf_type] = time.perf_counter() - began
    rows = {}
    for gguf_type, path in files.items():
        check = verify(model, path, gguf_type, GENERAL_TEXT, None if gguf_type == "f16" else f16)
        rows[gguf_type] = {
            "write_s": round(times[gguf_type], 1),
            "size_mb": round(path.stat().st_size / 1024**2, 1),
            "size_of_f16": round(path.stat().st_size / f16.stat().st_size, 3),
            "agree": f"{check['agree']}/{check['tokens']}",
            "ppl": check["ppl"],
            "ppl_f16": check["ppl_f16"],
            "ppl_ratio": round(check["ppl"] / check["ppl_f16"], 4),
            "passed": check["passed"],
        }
    cpu = platform.processor() or platform.machine()
    result = {"benchmark": "gguf_export", "model": "SmolLM2-135M-Instruct", "types": rows, "cpu": cpu}
    print(json.dumps({**result, "cores": os.cpu_count()}, indent=2))


if __name__ == "__main__":
    main()
