"""How tokenized examples become training batches, with no compute off the trained tokens.

  - Padding-free: a batch's examples are laid end to end in one row, with position ids that
    restart at each example; transformers builds a block-diagonal causal mask from them, so no
    example attends to another and no compute goes to padding.
  - Logits only where a token is trained: the language-model head (for SmolLM2 a fifth of the
    model's compute) and the cross-entropy skip prompt positions. transformers reads a boolean
    `logits_to_keep` mask and the matching `shift_labels`; the loss and its gradient are those of
    every position, since the skipped ones carried label -100.
Both leave the optimisation as it was: the same examples per step, the same per-token loss.

Measured and not kept (docs/benchmarks.md): length-grouped padded batches ran faster still on
the CPU benchmark, but grouping changed which examples share a step, and eval loss came out 5%
worse than the plain script's.
"""

from __future__ import annotations

import inspect

import torch
from transformers import DataCollatorWithFlattening

from backend.templates import IGNORE_INDEX


class TrainedLogitsOnly:
    """Wrap a collator: add the mask of positions whose next token is trained, and those targets."""

    def __init__(self, collate):
        self.collate = collate

    def __call__(self, features):
        batch = self.collate(features)
        labels = batch["labels"]
        shifted = torch.nn.functional.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)
        keep = shifted != IGNORE_INDEX
        batch["logits_to_keep"] = keep
        batch["shift_labels"] = shifted[keep]  # one target per kept position, as the loss flattens the logits
        return batch


def keeps_trained_logits(model) -> bool:
    """Whether the model's forward takes a logits_to_keep mask (Llama, Qwen, Mistral, Gemma, ... do)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def padding_free_collator(model):
    """Examples end to end in one row (the separator label keeps them apart); logits only where trained."""
    flatten = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)
    return TrainedLogitsOnly(flatten) if keeps_trained_logits(model) else flatten
