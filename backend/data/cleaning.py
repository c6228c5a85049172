"""Cleaning: PII scrubbing, duplicate detection and train/validation leakage.

Near-duplicates are texts equal after folding case, whitespace and punctuation.
"""

from __future__ import annotations

import hashlib
import re
import string
import unicodedata
from collections import Counter
from typing import Any

from backend.data.messages import Example, example_text, map_texts

PII_PATTERNS = {
    "email": re.compile(r"\b[\w.+-]+@[\w-]+(?:\.[\w-]+)+\b"),
    "card": re.compile(r"\b(?:\d[ -]?){12,18}\d\b"),
    "ipv4": re.compile(r"\b(?:(?:25[0-5]|2[0-4]\d|1?\d?\d)\.){3}(?:25[0-5]|2[0-4]\d|1?\d?\d)\b"),
    "phone": re.compile(r"(?<![\w.])\+?\d{1,3}?[ .-]?\(?\d{2,4}\)?[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w.])"),
}
PII_TOKENS = {"email": "[EMAIL]", "card": "[CARD]", "ipv4": "[IP]", "phone": "[PHONE]"}
_PUNCT = str.maketrans("", "", string.punctuation + "¿¡«»“”‘’…")


def scrub_text(text: str, counts: Counter) -> str:
    # Order matters: cards before phones (a card number also looks like a long phone number),
    # and IPs before phones (dotted digits).
    for kind, pattern in PII_PATTERNS.items():
        text, n = pattern.subn(PII_TOKENS[kind], text)
        counts[kind] += n
    return text


def scrub_example(example: Example, counts: Counter) -> Example:
    return map_texts(example, lambda text: scrub_text(text, counts))


def exact_key(example: Example) -> str:
    return hashlib.blake2b(example_text(example).encode("utf-8"), digest_size=16).hexdigest()


def normalized_key(example: Example) -> str:
    text = unicodedata.normalize("NFKC", example_text(example)).casefold().translate(_PUNCT)
    return hashlib.blake2b(" ".join(text.split()).encode("utf-8"), digest_size=16).hexdigest()


def count_duplicates(keys: list[str]) -> int:
    """Rows that repeat an earlier row exactly."""
    return sum(n - 1 for n in Counter(keys).values() if n > 1)


def dedup(examples: list[Example]) -> tuple[list[Example], int]:
    seen: set[str] = set()
    kept = []
    for example in examples:
        key = exact_key(example)
        if key not in seen:
            seen.add(key)
            kept.append(example)
    return kept, len(examples) - len(kept)


def leaked(train: list[Example], validation: list[Example]) -> list[int]:
    """Indices of validation examples whose normalized text also occurs in training."""
    train_keys = {normalized_key(e) for e in train}
    return [i for i, e in enumerate(validation) if normalized_key(e) in train_keys]


def preview_text(example: Example, limit: int = 160) -> str:
    text: Any = example_text(example).replace("\n", " ⏎ ")
    return text if len(text) <= limit else text[: limit - 1] + "…"
