"""Writes bench/data/speed_{train,eval}.json: the fixed alpaca data of bench/train_speed.py.

Deterministic (seeded), written by us, with answer lengths that vary from one line to a long
paragraph, as real instruction data does: that spread is what padding wastes compute on.
Run it only to change the data; the JSON files are committed.
"""

from __future__ import annotations

import json
import random
from pathlib import Path

TOPICS = [
    ("rivers", "carry water from high ground to the sea", "shape valleys and feed farmland"),
    ("volcanoes", "release molten rock from inside the earth", "build new land and enrich soil"),
    ("bees", "carry pollen between flowers", "make honey and keep crops fruitful"),
    ("tides", "rise and fall with the pull of the moon", "shape coastlines and sort sand"),
    ("glaciers", "move slowly down mountains under their own weight", "carve wide valleys and lakes"),
    ("forests", "store carbon in wood and soil", "shelter animals and cool the air"),
    ("deserts", "receive very little rain each year", "swing from hot days to cold nights"),
    ("coral reefs", "grow from the skeletons of tiny animals", "protect coasts and host many fish"),
    ("clouds", "form when moist air cools and condenses", "reflect sunlight and bring rain"),
    ("bridges", "carry roads across rivers and valleys", "spread loads through arches, beams or cables"),
    ("batteries", "store energy as chemical differences", "release it as current when a circuit closes"),
    ("compilers", "translate source code into machine instructions", "check types and optimise loops"),
    ("libraries", "lend books and other media to the public", "offer quiet space and free courses"),
    ("markets", "bring buyers and sellers together", "set prices through supply and demand"),
    ("vaccines", "train the immune system with a harmless signal", "prevent serious illness"),
    ("telescopes", "gather light from distant objects", "reveal planets, stars and galaxies"),
]
CONNECTORS = ["In addition,", "Moreover,", "Also,", "Beyond that,", "On top of this,", "Furthermore,"]
DETAILS = [
    "scientists have studied this for more than a century",
    "the effect changes from season to season",
    "small changes can have large consequences over time",
    "local conditions decide how strong the effect is",
    "people have relied on this since ancient times",
    "modern instruments measure it with great precision",
    "the process is slow but steady",
    "many textbooks describe it with simple diagrams",
]


def example(rng: random.Random) -> dict:
    topic, what, why = rng.choice(TOPICS)
    kind = rng.choice(["short", "facts", "explain", "list"])
    if kind == "short":
        return {
            "instruction": f"In one sentence, what do {topic} do?",
            "input": "",
            "output": f"{topic.capitalize()} {what}.",
        }
    if kind == "list":
        n = rng.randint(2, 12)
        items = "\n".join(f"{i + 1}. {rng.choice(DETAILS).capitalize()}." for i in range(n))
        return {"instruction": f"List {n} notes about {topic}.", "input": "", "output": items}
    sentences = [f"{topic.capitalize()} {what}, and they {why}."]
    for _ in range(rng.randint(2, 18) if kind == "explain" else rng.randint(0, 5)):
        sentences.append(f"{rng.choice(CONNECTORS)} {rng.choice(DETAILS)}.")
    context = (
        f"The reader is {rng.choice(['a student', 'a teacher', 'an engineer', 'a child'])}."
        if rng.random() < 0.5
        else ""
    )
    return {"instruction": f"Explain {topic} to me.", "input": context, "output": " ".join(sentences)}


def main() -> None:
    rng = random.Random(2026)
    rows = [example(rng) for _ in range(288)]
    out = Path(__file__).resolve().parent / "data"
    out.mkdir(exist_ok=True)
    (out / "speed_train.json").write_text(json.dumps(rows[:256], indent=1) + "\n", encoding="utf-8")
    (out / "speed_eval.json").write_text(json.dumps(rows[256:], indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
