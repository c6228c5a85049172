"""How much arithmetic training does, and how much the hardware can do: tokens/s as GFLOP/s and MFU.

A training token costs about 2N FLOPs forward and 2N backward to the activations, for N model
parameters; full fine-tuning adds 2N for the weight gradients. LoRA's own weights are too few
to count; freeze tuning pays backward only for the layers it trains.
Attention's sequence-length term is left out, as is usual for MFU figures.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


def training_flops_per_token(n_params: int, method: str, n_trained: int = 0) -> float:
    """Forward 2N for every method; the backward differs by how far the gradient travels and what it updates.

    full: 4N (activations and weights); lora and qlora: 2N (activations all the way down; the
    adapter is too small to count); freeze: 4 per trained weight, since the gradient stops at the
    lowest trained layer (the frozen head's share above it is left out, like attention's).
    """
    if method == "full":
        return 6 * n_params
    if method == "freeze":
        return 2 * n_params + 4 * n_trained
    return 4 * n_params


def parameters_in_memory(model, trainable_only: bool = False) -> int:
    """Parameter count; a 4-bit weight packs two values in each stored byte, so it counts twice its numel."""
    total = 0
    for p in model.parameters():
        if trainable_only and not p.requires_grad:
            continue
        total += p.numel() * (2 if type(p).__name__ == "Params4bit" else 1)
    return total


def parameter_count(model_dir: str | Path) -> int:
    """Parameters of a safetensors model folder, read from the file headers (no weights loaded)."""
    total = 0
    for path in Path(model_dir).glob("*.safetensors"):
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            header = json.loads(f.read(size))
        for name, meta in header.items():
            if name != "__metadata__":
                count = 1
                for dim in meta["shape"]:
                    count *= dim
                total += count
    return total


def matmul_peak_gflops(device: str = "cpu", n: int = 2048, reps: int = 8) -> float:
    """A large matmul in the training dtype: the practical peak that MFU is measured against."""
    import torch

    dtype = torch.bfloat16 if device.startswith("cuda") else torch.float32
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    torch.matmul(a, b)  # warm-up
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    began = time.perf_counter()
    for _ in range(reps):
        torch.matmul(a, b)
    if device.startswith("cuda"):
        torch.cuda.synchronize()
    return 2 * n**3 * reps / (time.perf_counter() - began) / 1e9
