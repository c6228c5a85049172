"""How tokenized examples become training batches, with no compute off the trained tokens.

  - Padding-free: a batch's examples are laid end to end in one row, with position ids that
    restart at each example; transformers builds a block-diagonal causal mask from them, so no
    example attends to another and no compute goes to padding.
  - Logits only where a token is trained: the language-model head (for SmolLM2 a fifth of the
    model's compute) and the cross-entropy skip prompt positions. transformers reads a boolean
    `logits_to_keep` mask and the matching `shift_labels`; the loss and its gradient are those of
    every position, since the skipped ones carried label -100.
  - Attention per example: on a GPU with a variable-length kernel installed (FlashAttention 3 or 2,
    or the hub's kernel), the whole row in one call that takes the example boundaries; otherwise SDPA
    once per packed example, causal within it, instead of once over the whole row under a
    block-diagonal mask. The mask's answer is the same, but SDPA over
    the row computes every pair of tokens in it, examples with each other too, and then discards
    them; a row of 4 examples did about 8 times the attention arithmetic it needed.
All three leave the optimisation as it was: the same examples per step, the same per-token loss.

Measured and not kept (docs/benchmarks.md): length-grouped padded batches ran faster still on
the CPU benchmark, but grouping changed which examples share a step, and eval loss came out 5%
worse than the plain script's.
"""

from __future__ import annotations

import inspect

import torch
from transformers import AttentionInterface, DataCollatorWithFlattening
from transformers.integrations.sdpa_attention import sdpa_attention_forward

from backend.templates import IGNORE_INDEX

PER_EXAMPLE = "tuneforge_per_example"  # an attention implementation, registered with transformers below


# Eager even inside a compiled decoder block (torch_compile, backend.training.regional_compile): the loop
# reads the row's example boundaries as ints, and a graph would be specialised, and recompiled, on them.
@torch.compiler.disable
def per_example_attention(module, query, key, value, attention_mask, cu_seq_lens_q=None, sliding_window=None, **kwargs):
    """transformers' SDPA attention, once per example of a padding-free row, causal within each.

    The row's example boundaries come from the collator (cu_seq_lens_q). Anything else (a padded
    batch, a mask, one token while generating) is plain SDPA. A sliding-window layer (Mistral,
    Qwen2, Gemma 3, Phi-3) keeps its window inside each example.
    """
    for key_name in ("cu_seq_lens_k", "max_length_q", "max_length_k"):
        kwargs.pop(key_name, None)
    if cu_seq_lens_q is None or attention_mask is not None or query.shape[0] != 1:
        return sdpa_attention_forward(module, query, key, value, attention_mask, **kwargs)
    bounds = cu_seq_lens_q.tolist()
    if query.device.type == "cpu" and query.dtype == torch.bfloat16:
        # SDPA's bf16 CPU kernels run slower than its fp32 ones (about 3x, forward and backward, for
        # examples of about 100 tokens on an AMX CPU), and attention is a small share of a step's
        # arithmetic: run it in fp32, out of the Trainer's autocast, which would cast it back to bf16.
        with torch.autocast("cpu", enabled=False):
            query, key, value = query.float(), key.float(), value.float()
            return _each_example(module, query, key, value, bounds, sliding_window, kwargs).bfloat16(), None
    return _each_example(module, query, key, value, bounds, sliding_window, kwargs), None


def _each_example(module, query, key, value, bounds: list[int], window: int | None, kwargs: dict):
    pieces = []
    for a, b in zip(bounds[:-1], bounds[1:], strict=True):
        # SDPA takes no window: the model's mask carries it, and no mask is built for this attention.
        # Without one, an example longer than the window would see tokens its layer must not.
        mask = _sliding_causal_mask(b - a, window, query.device) if window and b - a > window else None
        pieces.append(
            sdpa_attention_forward(module, query[:, :, a:b], key[:, :, a:b], value[:, :, a:b], mask, **kwargs)[0]
        )
    return torch.cat(pieces, dim=1)


def _sliding_causal_mask(length: int, window: int, device) -> torch.Tensor:
    """Where each query may attend: itself and the window - 1 tokens before it (transformers' convention)."""
    positions = torch.arange(length, device=device)
    distance = positions[:, None] - positions[None, :]
    return ((distance >= 0) & (distance < window))[None, None]


# Registered as an attention function only, not as a mask function: transformers then builds no
# mask for it, which is right for padding-free rows, the only batches a per-example model is given
# (padding_free_collator). A padded batch would lose its padding mask here.
AttentionInterface.register(PER_EXAMPLE, per_example_attention)


def _attention_of(model) -> tuple[object, str | None]:
    """The transformers model under any PEFT wrapper, and its attention implementation (None: not transformers')."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    return base, getattr(getattr(base, "config", None), "_attn_implementation", None)


# Variable-length attention kernels that take a padding-free row's example boundaries in one call,
# best first: (transformers' name for it, the package that provides it). The hub's kernel needs the
# `kernels` package and, the first time, the network.
VARLEN_KERNELS = (
    ("flash_attention_3", "flash_attn_interface"),
    ("flash_attention_2", "flash_attn"),
    ("kernels-community/flash-attn", "kernels"),
)
TAKES_BOUNDARIES = (PER_EXAMPLE, *(name for name, _ in VARLEN_KERNELS))


def packed_attention_candidates(on_cuda: bool, half_precision: bool, installed) -> list[str]:
    """The attentions to try for padding-free rows, in order; the per-example loop is always last.

    On a GPU a variable-length kernel runs the whole row in one launch, where the loop launches one
    SDPA call per example per layer. They run in bf16/fp16 only. On a CPU the loop is what pays.
    """
    kernels = [name for name, package in VARLEN_KERNELS if installed(package)] if on_cuda and half_precision else []
    return [*kernels, PER_EXAMPLE]


def use_packed_attention(model) -> str | None:
    """Switch a model on SDPA to attention that keeps packed examples apart; returns which, or None.

    None (unchanged) where the model cannot switch. Only the model in this process changes: the
    name is not saved with the weights, so a saved or exported model stays plain SDPA.
    """
    import importlib.util

    base, attention = _attention_of(model)
    if attention != "sdpa" or not base._can_set_attn_implementation():
        return None
    weight = next(base.parameters())
    half = weight.dtype in (torch.bfloat16, torch.float16)
    installed = lambda package: importlib.util.find_spec(package) is not None  # noqa: E731
    for name in packed_attention_candidates(weight.is_cuda, half, installed):
        try:
            base.set_attn_implementation(name)
            return name
        except (ImportError, ValueError, OSError, RuntimeError):
            continue  # a kernel that will not load here: the next one, and the loop last of all
    return None


ATTENTION_NAMES = {PER_EXAMPLE: "per example (SDPA, causal within each packed example)"}


def attend_packed_rows(model) -> tuple[str | None, str]:
    """Switch to attention that keeps packed examples apart where the model can; (its name, a line for train.log).

    Where it cannot, the model keeps its own attention over the whole row, and the block-diagonal
    mask transformers builds from the restarting position ids keeps the examples apart: the same
    answer, with the pairs across examples computed and then discarded. Gemma 2 is such a model:
    it soft-caps its attention logits, which SDPA cannot, so transformers gives it eager attention.
    """
    name = use_packed_attention(model)
    if name:
        return name, ATTENTION_NAMES.get(name, name)
    base, own = _attention_of(model)
    config = getattr(base, "config", None)
    why = (
        "it soft-caps attention logits, which SDPA cannot"
        if getattr(config, "attn_logit_softcapping", None)
        else "only SDPA is switched to per-example attention"
    )
    return own, f"{own} over each packed row under a block-diagonal mask ({type(base).__name__}: {why})"


def takes_example_boundaries(model) -> bool:
    """Whether the model's attention reads the collator's example boundaries (cu_seq_lens_*)."""
    return _attention_of(model)[1] in TAKES_BOUNDARIES


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
    """Examples end to end in one row (the separator label keeps them apart); logits only where trained.

    The example boundaries go along (cu_seq_lens_*) for a model that attends per example.
    """
    flatten = DataCollatorWithFlattening(
        return_position_ids=True, separator_id=IGNORE_INDEX, return_flash_attn_kwargs=takes_example_boundaries(model)
    )
    return TrainedLogitsOnly(flatten) if keeps_trained_logits(model) else flatten
