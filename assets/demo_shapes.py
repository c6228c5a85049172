"""Writes demo_shapes.json and demo_shapes/: pictures of one coloured shape each, with a question about it.

For the vision-demo model's learning demo: a question asks for the shape's colour or its kind, and the
answer is one word. Shapes vary in place and size, so no pixel position gives the answer away.
python assets/demo_shapes.py   (seeded: the same images and rows every time)
"""

import json
import random
from pathlib import Path

from PIL import Image, ImageDraw

COLOURS = {"red": (220, 40, 40), "green": (40, 170, 60), "blue": (40, 70, 220), "yellow": (235, 200, 30)}
SHAPES = ("circle", "square", "triangle")
QUESTIONS = {"colour": "What colour is the shape?", "shape": "Which shape is this?"}
SIZE = 64


def draw(shape: str, rgb: tuple[int, int, int], rng: random.Random) -> Image.Image:
    image = Image.new("RGB", (SIZE, SIZE), (250, 250, 250))
    side = rng.randint(26, 44)
    x, y = rng.randint(2, SIZE - side - 2), rng.randint(2, SIZE - side - 2)
    pen = ImageDraw.Draw(image)
    if shape == "circle":
        pen.ellipse((x, y, x + side, y + side), fill=rgb)
    elif shape == "square":
        pen.rectangle((x, y, x + side, y + side), fill=rgb)
    else:
        pen.polygon([(x + side / 2, y), (x, y + side), (x + side, y + side)], fill=rgb)
    return image


def rows(folder: Path, n: int = 240, seed: int = 2026) -> list[dict]:
    rng, out = random.Random(seed), []
    folder.mkdir(exist_ok=True)
    for i in range(n):
        colour, shape, asked = rng.choice(list(COLOURS)), rng.choice(SHAPES), ("colour", "shape")[i % 2]
        name = f"{i:03d}.png"
        draw(shape, COLOURS[colour], rng).save(folder / name, optimize=True)
        answer = colour if asked == "colour" else shape
        out.append(
            {
                "messages": [
                    {"role": "user", "content": f"<image>{QUESTIONS[asked]} Answer in one word."},
                    {"role": "assistant", "content": answer},
                ],
                "images": [f"{folder.name}/{name}"],
            }
        )
    return out


if __name__ == "__main__":
    here = Path(__file__).parent
    data = rows(here / "demo_shapes")
    (here / "demo_shapes.json").write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
