"""Benchmark: llama-perplexity's CPU seconds and wall time by thread count, alone and beside one busy process.

Why backend/serving/llamacpp.py's tools take OMP_NUM_THREADS: a thread a core beside another busy process (the
other pytest worker, say) waits at llama.cpp's barriers for a core it does not get. Runs the tool on the embedded
SmolLM2 GGUF and the bundled general text (the export check's 8 windows of 128 tokens). Prints JSON.
Usage: python bench/llama_threads.py
"""

from __future__ import annotations

import json
import multiprocessing
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def busy() -> None:
    while True:
        pass


def measured(gguf_file: Path, text: Path, threads: int) -> dict:
    from backend.serving import llamacpp
    from backend.serving.gguf_export import PPL_CHUNKS, PPL_CTX

    before, began = os.times(), time.perf_counter()
    ppl = llamacpp.perplexity(gguf_file, text, PPL_CTX, PPL_CHUNKS, threads=threads)
    after = os.times()
    cpu = (after.children_user - before.children_user) + (after.children_system - before.children_system)
    return {"threads": threads, "wall_s": round(time.perf_counter() - began, 2), "cpu_s": round(cpu, 2), "ppl": ppl}


def main() -> None:
    from backend.models.sources import DEFAULT_GGUF_FILE, embedded_gguf_dir
    from backend.serving.gguf_export import GENERAL_TEXT

    gguf_file = embedded_gguf_dir() / DEFAULT_GGUF_FILE
    report = {"benchmark": "llama_threads", "machine": platform.processor() or platform.machine(),
              "cpus": os.cpu_count(), "file": gguf_file.name, "alone": [], "beside_one_busy_process": []}  # fmt: skip
    for threads in (1, 2):
        report["alone"].append(measured(gguf_file, GENERAL_TEXT, threads))
    other = multiprocessing.Process(target=busy, daemon=True)
    other.start()
    try:
        for threads in (1, 2):
            report["beside_one_busy_process"].append(measured(gguf_file, GENERAL_TEXT, threads))
    finally:
        other.terminate()
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
