"""How much arithmetic a training step does, and how much the hardware can do: tokens/s as GFLOP/s and MFU.

The count is of the matmuls the step really runs, read from the model's linear layers:
- every token goes through the body (the decoder's projections, adapters included): 2 FLOPs per
  weight forward, 2 backward for the activations' gradient wherever it still has a trained weight
  below it, and 2 more for each trained weight's own gradient;
- the output projection (hidden × vocabulary) runs only for the tokens whose logits are kept: with
  padding-free batches (backend/training/batching.py) only the trained tokens, otherwise all;
- the embedding is a lookup, not a matmul, and counts nothing. For a small model whose embedding is
  most of its weights (Gemma 3 270M: 168M of 268M), counting it would overstate MFU several times.
Attention's sequence-length term is left out, as is usual for MFU figures.
"""

from __future__ import annotations

import functools
import re
import time
from dataclasses import dataclass

LAYER_INDEX = re.compile(r"\.(\d+)\.")


@dataclass(frozen=True)
class StepShape:
    """A model's weights, grouped by what a training token costs in each group."""

    body: int  # every linear weight but the output projection's
    body_trained: int  # those that get a gradient
    body_backward: int  # those the activations' gradient passes through: from the lowest trained layer up
    head: int  # the output projection's weights (hidden × vocabulary); 0 where the model has none
    head_trained: bool  # full fine-tuning of a model whose head (often tied to the embedding) trains


def step_shape(model) -> StepShape:
    """Read the shape from the model's linear layers (PEFT adapters and 4-bit layers included)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    head_module = base.get_output_embeddings() if hasattr(base, "get_output_embeddings") else None
    layers = []  # (layer index or None, weights, trained)
    head, head_trained = 0, False
    for name, module in base.named_modules():
        weights = _linear_weights(module)
        if not weights:
            continue
        trained = any(p.requires_grad for p in module.parameters(recurse=False))
        if module is head_module:
            head, head_trained = weights, trained
            continue
        match = LAYER_INDEX.search(f".{name}.")
        layers.append((int(match.group(1)) if match else None, weights, trained))
    trained_layers = [index for index, _, trained in layers if trained and index is not None]
    lowest = min(trained_layers, default=None)
    return StepShape(
        body=sum(weights for _, weights, _ in layers),
        body_trained=sum(weights for _, weights, trained in layers if trained),
        body_backward=sum(
            weights for index, weights, _ in layers if lowest is not None and (index is None or index >= lowest)
        ),
        head=head,
        head_trained=head_trained,
    )


def _linear_weights(module) -> int:
    """in × out for a linear layer, else 0. bitsandbytes' layers are torch Linears; a PEFT adapter wraps
    its base layer and its two low-rank Linears without being one, so nothing is counted twice.
    GPT-2's projections are transformers' Conv1D, a Linear with its weight stored transposed: left
    out, a GPT-2 step would count its head alone."""
    import torch
    from transformers.pytorch_utils import Conv1D

    if isinstance(module, torch.nn.Linear):
        return module.in_features * module.out_features
    return module.weight.numel() if isinstance(module, Conv1D) else 0


def training_flops_per_token(shape: StepShape, head_share: float = 1.0) -> float:
    """FLOPs per input token of one training step; head_share is the share of tokens whose logits are computed."""
    body = 2 * shape.body + 2 * shape.body_backward + 2 * shape.body_trained
    # Backward through the head: the hidden states' gradient when a trained weight lies below, its own if it trains.
    head_backward = (2 if shape.body_backward else 0) + (2 if shape.head_trained else 0)
    return float(body + (2 + head_backward) * shape.head * head_share)


# Measured once a process: a job trains once, and a process that trains several runs in turn (the tests of
# every architecture) would otherwise spend half a second of a small CPU on each measurement of the same peak.
@functools.cache
def matmul_peak_gflops(device: str = "cpu", n: int = 2048, reps: int = 8, dtype: str = "") -> float:
    """A large matmul in the training dtype (bf16, fp16 or fp32): the practical peak that MFU is measured against.

    Without dtype: bf16 on a GPU, fp32 on a CPU. A CPU with native bf16 runs bf16 several times faster
    than fp32, so a bf16 run's MFU against the fp32 peak would read several times too high.
    """
    import torch

    formats = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}
    chosen = formats[dtype or ("bf16" if device.startswith("cuda") else "fp32")]
    a = torch.randn(n, n, device=device, dtype=chosen)
    b = torch.randn(n, n, device=device, dtype=chosen)
    torch.matmul(a, b)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - began) / 1e9
