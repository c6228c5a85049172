"""Benchmark: Dataset-tab checks (preview, statistics, leakage, token histogram) on a large JSONL.

Writes a synthetic alpaca JSONL of --rows rows (default 500,000; about 5% repeated so the
duplicate and leakage checks have work), then times what the Dataset tab runs. Prints JSON.
Usage: python bench/data_scale.py [--rows N]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

WORDS = "model data train token answer question learn rate batch epoch loss forge adapter layer".split()


def write_rows(path: Path, rows: int) -> None:
    rng = random.Random(0)
    with open(path, "w", encoding="utf-8") as f:
        for i in range(rows):
            n = i if rng.random() > 0.05 else rng.randrange(i + 1)  # ~5% repeats of earlier rows
            words = [WORDS[(n * 7 + k) % len(WORDS)] for k in range(8 + n % 20)]
            row = {"instruction": f"Question {n}: {' '.join(words[:6])}?", "input": "", "output": " ".join(words)}
            f.write(json.dumps(row) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--rows", type=int, default=500_000)
    args = parser.parse_args()
    from backend.data import DataOptions
    from backend.data.report import inspect_dataset
    from backend.data.tokens import render_segments, token_stats, tokenizer_for

    path = Path(tempfile.mkdtemp(prefix="tuneforge-bench-")) / "big.jsonl"
    write_rows(path, args.rows)
    tokenizer_for("default", "chatml")  # model conversion/loading is not what this measures
    began = time.perf_counter()
    report = inspect_dataset(DataOptions(dataset=str(path), val_size=0.1))
    inspected = time.perf_counter() - began
    stats = token_stats(report.sample, "default", "chatml", 512, report.usable_rows)
    rendered = [render_segments(e, "default", "chatml", 512) for e in report.first_examples[:3]]
    total = time.perf_counter() - began
    print(
        json.dumps(
            {
                "benchmark": "data_scale",
                "rows": report.usable_rows,
                "file_mib": round(path.stat().st_size / 2**20, 1),
                "inspect_s": round(inspected, 2),
                "preview_and_statistics_total_s": round(total, 2),
                "duplicates": report.duplicates,
                "leaked_validation_rows": report.leaked,
                "token_sample_rows": stats.sampled,
                "rendered_rows": len(rendered),
                "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
