"""The LM head reads a packed input, so that generation's first forward skips torch's slow path on a CPU.

At the first forward of every generate() (the prefill), transformers projects only the prompts' last positions:
`hidden_states[:, -1:, :]`, a 3-D view whose rows lie a whole prompt apart. torch 2.13's CPU linear cannot fold
that view into one matrix product and takes a far slower path. On SmolLM2's 49,152 x 576 head, one thread:
- 8 prompts: 924 ms in bf16 against 8.7 ms for the same rows packed (77 against 20 in fp32);
- 1 prompt: 118 ms against 7 in bf16. torch calls that view "contiguous", since a dimension of size 1 may have
  any stride, yet takes the slow path on it: so the check below is on the strides themselves.
The cost grows with the vocabulary and the width, and it is paid at every prefill: each chat reply, evaluation
batch, benchmark generation and GRPO rollout (the GRPO demo job: 53 CPU-s down to 41, the same numbers). Packing
copies prompts x width numbers; an input already packed passes untouched. bench/head_input.py, docs/benchmarks.md.
"""

from __future__ import annotations

import torch

MARK = "_tuneforge_contiguous_input"


def packed_strides(shape) -> tuple[int, ...]:
    """The strides of a freshly made tensor of this shape, each dimension laid out right after the next."""
    strides, step = [], 1
    for size in reversed(shape):
        strides.append(step)
        step *= size
    return tuple(reversed(strides))


def _packed(module, args):
    hidden = args[0] if args else None
    if hidden is None or not hasattr(hidden, "stride") or hidden.stride() == packed_strides(hidden.shape):
        return None
    return (hidden.clone(memory_format=torch.contiguous_format), *args[1:])


def read_contiguous_head_input(model):
    """Give the model's LM head a contiguous input from now on (once per head); returns the model."""
    head = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    if head is not None and not getattr(head, MARK, False):
        head.register_forward_pre_hook(_packed)
        setattr(head, MARK, True)
    return model
