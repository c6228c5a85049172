"""Placeholders such as {{name}} and {{author}}, left in data to be filled before training.

LLaMA-Factory's identity.json teaches a model who it is with answers like "I am {{name}}, an AI
assistant developed by {{author}}". Filling the two placeholders is the classic first fine-tune:
give the model a new name. Placeholders left unfilled are counted, so a run never teaches a model
to call itself "{{name}}" without saying so.
"""

from __future__ import annotations

import re
from collections import Counter

from backend.data.messages import Example, map_texts

PLACEHOLDER = re.compile(r"\{\{(name|author)\}\}")


def fill_placeholders(example: Example, values: dict[str, str], found: Counter) -> Example:
    """The example with each {{key}} that has a value replaced; every placeholder seen is counted in found."""

    def fill(text: str) -> str:
        def replace(match: re.Match) -> str:
            found[match.group(1)] += 1
            return values.get(match.group(1)) or match.group(0)

        return PLACEHOLDER.sub(replace, text)

    return map_texts(example, fill)


def unfilled_note(name: str, found: Counter | dict, values: dict[str, str]) -> str | None:
    """One line naming the placeholders left in the data and the options that fill them, or None."""
    left = {key: n for key, n in found.items() if n and not values.get(key)}
    if not left:
        return None
    keys = sorted(left)
    placeholders = " and ".join("{{" + k + "}}" for k in keys)
    options = " and ".join(f"identity_{k}" for k in keys)
    return f"{name}: {sum(left.values())} {placeholders} placeholders left as they are; set {options} to fill them"
