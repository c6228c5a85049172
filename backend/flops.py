"""How much arithmetic training does, and how much the hardware can do: tokens/s as GFLOP/s and MFU.

A training token costs about 2N FLOPs forward and 2N backward to the activations, for N model
parameters; full fine-tuning adds 2N for the weight gradients. LoRA's own weights are too few
to count. Attention's sequence-length term is left out, as is usual for MFU figures.
"""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path


def training_flops_per_token(n_params: int, method: str) -> float:
    return (6 if method == "full" else 4) * n_params


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
