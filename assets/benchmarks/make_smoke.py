"""Writes tuneforge_smoke/, the benchmark TuneForge ships: generated arithmetic and unit-conversion questions.

    python assets/benchmarks/make_smoke.py

A smoke test that the benchmark feature works offline, out of the box; not MMLU, and no measure of
general ability. Generated here from a fixed seed, so we can license it (as the project) and anyone
can rebuild it byte for byte. The folder is in MMLU's layout: test/<subject>_test.csv and
dev/<subject>_dev.csv (few-shot examples), rows of question, A, B, C, D, answer, without a header.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

OUT = Path(__file__).resolve().parent / "tuneforge_smoke"
TEST, DEV = 100, 5
UNITS = [  # (from, to, factor): value in `from` times factor is the value in `to`
    ("kilometres", "metres", 1000),
    ("metres", "centimetres", 100),
    ("kilograms", "grams", 1000),
    ("litres", "millilitres", 1000),
    ("hours", "minutes", 60),
    ("minutes", "seconds", 60),
    ("days", "hours", 24),
    ("weeks", "days", 7),
    ("centimetres", "millimetres", 10),
    ("tonnes", "kilograms", 1000),
]


def options(rng: random.Random, right: int, near: list[int]) -> tuple[list[str], str]:
    """Four distinct choices, the right one at a random place; distractors are plausible mistakes."""
    wrong = [w for w in dict.fromkeys(near) if w != right and w >= 0]
    while len(wrong) < 3:
        candidate = right + rng.choice([-1, 1]) * rng.randint(1, max(2, right // 3 + 1))
        if candidate != right and candidate >= 0 and candidate not in wrong:
            wrong.append(candidate)
    choices = [right, *rng.sample(wrong[:5], 3)]
    rng.shuffle(choices)
    return [str(c) for c in choices], "ABCD"[choices.index(right)]


def arithmetic(rng: random.Random) -> list[str]:
    op = rng.choice("+-*")
    if op == "*":
        a, b = rng.randint(2, 12), rng.randint(2, 12)
        right, near = a * b, [a * (b + 1), a * (b - 1), a + b, (a + 1) * b]
        text = f"What is {a} times {b}?"
    elif op == "+":
        a, b = rng.randint(10, 99), rng.randint(10, 99)
        right, near = a + b, [a + b + 10, a + b - 10, a + b + 1, a - b if a > b else b - a]
        text = f"What is {a} plus {b}?"
    else:
        a, b = rng.randint(50, 99), rng.randint(10, 49)
        right, near = a - b, [a - b + 10, a - b - 10, a + b, a - b + 1]
        text = f"What is {a} minus {b}?"
    choices, answer = options(rng, right, near)
    return [text, *choices, answer]


def unit_conversion(rng: random.Random) -> list[str]:
    source, target, factor = rng.choice(UNITS)
    value = rng.randint(2, 25)
    right = value * factor
    near = [value * factor * 10, value * factor // 10, (value + 1) * factor, value + factor]
    choices, answer = options(rng, right, near)
    return [f"How many {target} are in {value} {source}?", *choices, answer]


def write(path: Path, rows: list[list[str]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="", encoding="utf-8") as f:
        csv.writer(f, lineterminator="\n").writerows(rows)


def main() -> None:
    rng = random.Random(35)
    for subject, make in (("arithmetic", arithmetic), ("unit_conversion", unit_conversion)):
        rows, seen = [], set()
        while len(rows) < TEST + DEV:
            row = make(rng)
            if row[0] not in seen:
                seen.add(row[0])
                rows.append(row)
        write(OUT / "dev" / f"{subject}_dev.csv", rows[:DEV])
        write(OUT / "test" / f"{subject}_test.csv", rows[DEV:])
    print(f"wrote {OUT}")


if __name__ == "__main__":
    main()
