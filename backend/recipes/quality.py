"""Flags on generated rows, before anyone trains on them.

- duplicate: the same text as an earlier row once case, whitespace and punctuation are folded
  (backend.data.cleaning's normalized key, as the Dataset tab counts duplicates);
- near_duplicate: a MinHash estimate (datasketch) of the Jaccard similarity of word 3-shingles at or above
  `near_threshold` with an earlier row: rewordings of one question;
- ungrounded: under `grounding_min` of an answer's content words occur in its chunk. Token overlap rather
  than the embedded MiniLM's similarity: it is instant, it needs no model in the recipe's process, and it
  says which words were invented; a paraphrase with new words can be flagged, which the table lets a person undo;
- too_short / too_long: an answer under `min_chars` characters, or a row over `max_chars`;
- pii: an e-mail, card number, IP address or phone number (backend.data.cleaning's patterns).

Duplicates are dropped from the saved set; the other flags are shown, and the person decides.
"""

from __future__ import annotations

import re
import unicodedata

from backend.data.cleaning import PII_PATTERNS
from backend.recipes.steps import answers_of, row_text

FLAGS = ("duplicate", "near_duplicate", "ungrounded", "too_short", "too_long", "pii")
DROPPED = ("duplicate", "near_duplicate")
WORD = re.compile(r"\w+", re.UNICODE)
# Words that carry no claim: an answer made of them is neither grounded nor invented.
STOPWORDS = set(
    "a an and are as at be been but by can could did do does for from had has have he her his how i if in into is "
    "it its may me might more most must my no not of on or our she should so such than that the their them then "
    "there these they this those to up us was we were what when where which who whom why will with would you your "
    "yes also about any all each other only very just one two".split()
)
NUM_PERM = 64


def words(text: str) -> list[str]:
    return WORD.findall(unicodedata.normalize("NFKC", text).casefold())


def grounding(answer: str, chunk: str) -> float:
    """The share of the answer's content words (not stopwords) that occur in the chunk; 1.0 with none."""
    content = [w for w in words(answer) if w not in STOPWORDS]
    if not content:
        return 1.0
    found = set(words(chunk))
    return sum(w in found or _stem(w) in found for w in content) / len(content)


def _stem(word: str) -> str:
    return word[:-1] if len(word) > 3 and word.endswith("s") else word + "s"


def flag_rows(
    rows: list[dict],
    chunks: dict[int, str],
    grounding_min: float = 0.5,
    near_threshold: float = 0.8,
    min_chars: int = 8,
    max_chars: int = 8000,
) -> list[list[str]]:
    """Each row's flags, in order; rows carry `chunk` (their chunk's index), and later rows repeat earlier ones."""
    from datasketch import MinHash, MinHashLSH

    from backend.data.cleaning import normalized_key

    lsh = MinHashLSH(threshold=near_threshold, num_perm=NUM_PERM)
    seen: set[str] = set()
    flags: list[list[str]] = []
    for i, row in enumerate(rows):
        text, answers, row_flags = row_text(row), answers_of(row), []
        key = normalized_key({"text": text})
        if key in seen:
            row_flags.append("duplicate")
        seen.add(key)
        signature = _minhash(MinHash, text)
        if "duplicate" not in row_flags and lsh.query(signature):
            row_flags.append("near_duplicate")
        lsh.insert(str(i), signature)
        chunk = chunks.get(row.get("chunk"), "")
        if chunk and any(grounding(a, chunk) < grounding_min for a in answers):
            row_flags.append("ungrounded")
        if any(len(a.strip()) < min_chars for a in answers):
            row_flags.append("too_short")
        if len(text) > max_chars:
            row_flags.append("too_long")
        if any(pattern.search(text) for pattern in PII_PATTERNS.values()):
            row_flags.append("pii")
        flags.append(row_flags)
    return flags


def _minhash(MinHash, text: str):  # noqa: N803 - datasketch's class, passed in so it is imported once
    tokens = words(text)
    shingles = {" ".join(tokens[i : i + 3]) for i in range(max(1, len(tokens) - 2))}
    signature = MinHash(num_perm=NUM_PERM, seed=1)
    for shingle in shingles:
        signature.update(shingle.encode("utf-8"))
    return signature


def kept(rows: list[dict], flags: list[list[str]]) -> list[dict]:
    return [row for row, row_flags in zip(rows, flags, strict=True) if not set(row_flags) & set(DROPPED)]
