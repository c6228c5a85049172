"""Writes demo_arithmetic.jsonl: short sums and differences with their answers, for the grpo demo.

python assets/demo_arithmetic.py   (seeded: the same 240 rows every time)
"""

import json
import random
from pathlib import Path


def rows(n: int = 240, seed: int = 2026) -> list[dict]:
    rng, seen, out = random.Random(seed), set(), []
    while len(out) < n:
        a, b, op = rng.randint(1, 30), rng.randint(1, 30), rng.choice("+-")
        if op == "-" and b > a:
            a, b = b, a  # no negative answers: the demo is about format and sums, not signs
        question = f"{a} {op} {b} = ?\nAnswer with a single number."
        if (a, b) not in seen:  # 12 + 6 and 12 - 6 read alike once punctuation goes: a leak to the checks
            seen.add((a, b))
            out.append({"question": question, "answer": a + b if op == "+" else a - b})
    return out


if __name__ == "__main__":
    target = Path(__file__).with_name("demo_arithmetic.jsonl")
    target.write_text("".join(json.dumps(r) + "\n" for r in rows()), encoding="utf-8")
