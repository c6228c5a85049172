"""What the model will see: token lengths, cost, and rows rendered with trained tokens marked.

Needs the model's tokenizer, so transformers is imported here (lazily, through backend.models.sources).
"""

from __future__ import annotations

import statistics
from dataclasses import dataclass
from functools import lru_cache

from backend.data.messages import Example
from backend.errors import TuneForgeError
from backend.templates import IGNORE_INDEX, encode_example


@lru_cache(maxsize=2)
def tokenizer_for(model: str, template: str):
    from backend.models.sources import load_tokenizer, resolve_model

    return load_tokenizer(resolve_model(model, progress=lambda msg: None), template)


@dataclass
class TokenStats:
    lengths: list[int]  # untruncated token counts of the sampled rows
    cutoff_len: int
    sampled: int
    rows: int

    @property
    def truncated_share(self) -> float:
        return sum(n > self.cutoff_len for n in self.lengths) / max(1, len(self.lengths))

    @property
    def mean_tokens(self) -> float:
        """Mean tokens per row after truncation: what one row costs a training step."""
        return statistics.fmean(min(n, self.cutoff_len) for n in self.lengths) if self.lengths else 0.0

    def tokens_per_epoch(self, train_rows: int) -> int:
        return int(round(self.mean_tokens * train_rows))


@lru_cache(maxsize=2)
def processor_for(model: str):
    """A vision-language model's processor, or None for a text-only model."""
    from backend.models.sources import resolve_model
    from backend.models.vision import is_vision_folder, load_processor

    path = resolve_model(model, progress=lambda msg: None)
    return load_processor(path) if is_vision_folder(path) else None


def token_count(tokenizer, example: Example, model: str, max_pixels: int = 0) -> int:
    """An example's untruncated tokens; a vision model's image tokens count as the real tokens they are."""
    if example.get("images"):
        from backend.data.vision_encoding import encode_with_images

        processor = processor_for(model)
        if processor is not None:
            return len(encode_with_images(processor, example, 10**9, max_pixels)["input_ids"])
    return len(encode_example(tokenizer, example, 10**9)["input_ids"])


def token_stats(
    examples: list[Example], model: str, template: str, cutoff_len: int, rows: int, max_pixels: int = 0
) -> TokenStats:
    tokenizer = tokenizer_for(model, template)
    with_images = next((i for i, e in enumerate(examples, start=1) if e.get("images")), None)
    if with_images and processor_for(model) is None:
        raise TuneForgeError(
            f"row {with_images} has images, but model {model} reads text only; choose a vision-language model "
            "(model: vision-demo, or a Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM, LLaVA or Gemma 3 folder)"
        )
    lengths = [token_count(tokenizer, e, model, max_pixels) for e in examples if "label" not in e]
    return TokenStats(lengths=lengths, cutoff_len=cutoff_len, sampled=len(examples), rows=rows)


def tokens_to_train(stats: TokenStats, train_rows: int, epochs: float, max_steps: int, batch_rows: int) -> int:
    """Epochs x tokens per epoch, or max_steps x rows per step x mean tokens when max_steps is set."""
    if max_steps > 0:
        return int(round(max_steps * batch_rows * stats.mean_tokens))
    return int(round(stats.tokens_per_epoch(train_rows) * epochs))


def render_segments(example: Example, model: str, template: str, cutoff_len: int) -> list[tuple[str, str | None]]:
    """The row as the model sees it: (text, "trained" | "masked") runs, truncated at cutoff_len."""
    if "label" in example:
        return [(example["text"], None), (f"  → label: {example['label']}", "trained")]
    tokenizer = tokenizer_for(model, template)
    encoded = encode_example(tokenizer, example, cutoff_len)
    segments: list[tuple[str, str | None]] = []
    run: list[int] = []
    current = None
    for token, label in zip(encoded["input_ids"], encoded["labels"], strict=True):
        kind = "masked" if label == IGNORE_INDEX else "trained"
        if kind != current and run:
            segments.append((tokenizer.decode(run), current))
            run = []
        current = kind
        run.append(token)
    if run:
        segments.append((tokenizer.decode(run), current))
    return segments
