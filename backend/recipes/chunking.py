"""Blocks into chunks: a heading starts a new chunk, paragraphs fill one up to a token target, and the next
chunk of the same section begins with the last `overlap` tokens of the one before.

Token counts are the chosen model's tokenizer's (any callable text -> count), so a chunk fits the context of
the model that will read it. A paragraph longer than the target is cut at sentences, and a sentence longer
than the target at words, so no chunk passes the target except by one word longer than the target itself.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from backend.errors import TuneForgeError
from backend.recipes.documents import Block, FileReport

SENTENCE_END = re.compile(r"(?<=[.!?。！？])\s+")


@dataclass
class Chunk:
    index: int
    text: str
    file: str
    page: int | None
    heading: str
    tokens: int

    @property
    def source(self) -> dict:
        """Where the chunk came from, as each row keeps it: the file, and its page or heading."""
        where: dict = {"file": self.file}
        if self.page is not None:
            where["page"] = self.page
        if self.heading:
            where["heading"] = self.heading
        return where

    @property
    def source_line(self) -> str:
        return source_line(self.source)


def source_line(source: dict) -> str:
    parts = [str(source.get("file", ""))]
    if source.get("page") is not None:
        parts.append(f"p. {source['page']}")
    if source.get("heading"):
        parts.append(f"§ {source['heading']}")
    return ", ".join(parts)


def chunk_files(reports: list[FileReport], count: Callable[[str], int], target: int, overlap: int) -> list[Chunk]:
    """Every readable file's chunks, numbered across files; each report learns its own count."""
    if target < 16:
        raise TuneForgeError(f"chunk_tokens {target}: use at least 16 tokens")
    if not 0 <= overlap < target // 2:
        raise TuneForgeError(f"overlap_tokens {overlap}: use 0 or more, and less than half of chunk_tokens ({target})")
    chunks: list[Chunk] = []
    for report in reports:
        if report.error:
            continue
        made = chunk_blocks(report.blocks, count, target, overlap)
        for chunk in made:
            chunk.index = len(chunks)
            chunks.append(chunk)
        report.chunks = len(made)
    return chunks


def chunk_blocks(blocks: list[Block], count: Callable[[str], int], target: int, overlap: int) -> list[Chunk]:
    chunks: list[Chunk] = []
    pieces: list[str] = []  # the chunk being filled; its first piece may be the previous chunk's tail
    own = 0  # how many of pieces are this chunk's own (not the carried tail): a chunk needs one to be written
    heading, page = "", None

    def flush(carry: bool) -> None:
        nonlocal pieces, own
        if own:
            text = " ".join(pieces)
            chunks.append(Chunk(0, text, blocks[0].file, page, heading, count(text)))
            tail = _tail(text, count, overlap) if carry and overlap else ""
            pieces = [tail] if tail else []
        else:
            pieces = []
        own = 0

    for block in blocks:
        if block.heading:
            flush(carry=False)
            heading = block.text
            continue
        for piece in _fitting(block.text, count, target - overlap):  # so the carried tail and a piece fit
            if pieces and count(" ".join([*pieces, piece])) > target:
                if own:
                    flush(carry=True)
                if pieces and count(" ".join([*pieces, piece])) > target:
                    pieces = []  # the overlap and this piece together pass the target: the piece goes alone
            if not own:
                page = block.page  # a chunk's page is where its own text begins
            pieces.append(piece)
            own += 1
    flush(carry=False)
    return chunks


def _fitting(text: str, count: Callable[[str], int], target: int) -> list[str]:
    """The paragraph, or its sentences, or a sentence's word runs: each no longer than the target."""
    if count(text) <= target:
        return [text]
    pieces: list[str] = []
    for sentence in SENTENCE_END.split(text):
        if count(sentence) <= target:
            pieces.append(sentence)
            continue
        run: list[str] = []
        for word in sentence.split():
            if run and count(" ".join([*run, word])) > target:
                pieces.append(" ".join(run))
                run = []
            run.append(word)
        if run:
            pieces.append(" ".join(run))
    return pieces


def _tail(text: str, count: Callable[[str], int], overlap: int) -> str:
    """The longest run of whole words at the end of text that is at most `overlap` tokens."""
    words = text.split()
    low, high = 0, len(words)  # binary search on how many words to keep
    while low < high:
        mid = (low + high + 1) // 2
        if count(" ".join(words[-mid:])) <= overlap:
            low = mid
        else:
            high = mid - 1
    return " ".join(words[-low:]) if low else ""


def token_counter(model: str) -> Callable[[str], int]:
    """The chosen model's tokenizer as a counter (no special tokens: they are the template's, not the text's)."""
    return _counter(model or "default")


@cache  # the app previews many times with one model
def _counter(model: str) -> Callable[[str], int]:
    """A model folder's tokenizer.json through the `tokenizers` library itself: the same ids as transformers'
    fast tokenizer, without importing transformers and torch into a job that only counts (a few seconds)."""
    from backend.models.sources import resolve_model

    folder = Path(resolve_model(model, progress=lambda message: None))
    if (folder / "tokenizer.json").is_file():
        from tokenizers import Tokenizer

        fast = Tokenizer.from_file(str(folder / "tokenizer.json"))
        return lambda text: len(fast.encode(text, add_special_tokens=False).ids)
    from backend.models.sources import load_tokenizer

    tokenizer = load_tokenizer(str(folder))
    return lambda text: len(tokenizer(text, add_special_tokens=False)["input_ids"])
