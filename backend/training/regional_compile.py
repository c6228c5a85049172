"""Regional compilation (`torch_compile: true`): each decoder block compiled once, reused by every layer.

Whole-model torch.compile lost on this project's CPU runs (docs/benchmarks.md, "CPU levers"): padding-free
rows change length at every step, so inductor compiled the whole graph again for new shapes, and its
~170 s of compiling would have paid back only after ~900 steps. Compiling the decoder block instead, the
code every layer shares, gives inductor one small graph (forward and backward) that the first layer
compiles and the others reuse, and `dynamic=True` compiles it for any sequence length from the start, so
a new row length is no recompile. Attention stays eager: the per-example loop reads the row's example
boundaries as Python ints (backend.training.batching), which a compiled graph would specialise on.

The blocks are compiled in place (`nn.Module.compile`), so parameter names, PEFT's adapters and the
saved weights are those of the eager model. Inductor's artefacts (FX graph and AOTAutograd caches) go
to a folder per model and torch version beside the model cache, so a second run of the same model loads
kernels instead of compiling them; dynamo still traces the block (seconds). Torch's on-disk caches are
enough on one machine; its mega-cache (torch.compiler.save_cache_artifacts) would only add a portable
copy for another machine, where the CPU's flags would change the kernels anyway.
"""

from __future__ import annotations

import hashlib
import os
import re
from pathlib import Path

import torch

from backend.paths import model_cache_dir


def compile_cache_dir(model_path: str | Path) -> Path:
    """The inductor cache folder of this model and torch version: the model's folder name and config hash."""
    path = Path(model_path)
    config = path / "config.json"
    digest = hashlib.sha256(config.read_bytes() if config.is_file() else str(path).encode()).hexdigest()[:12]
    name = re.sub(r"[^A-Za-z0-9._-]", "_", path.name)[:64] or "model"
    version = re.sub(r"[^A-Za-z0-9._-]", "_", torch.__version__)
    return model_cache_dir().parent / "compiled" / f"{name}-{digest}" / f"torch-{version}"


def compile_decoder_blocks(model, cache_dir: Path, every_block_trains: bool) -> tuple[int, str]:
    """Compile every decoder block of the model in place; (how many, the block's class). (0, '') if none found.

    every_block_trains: an adapter or full fine-tuning, where a gradient passes through every block anyway."""
    from backend.training.freeze import find_decoder_layers

    layers = find_decoder_layers(model)
    if layers is None or len(layers) == 0:
        return 0, ""
    cache_dir.mkdir(parents=True, exist_ok=True)
    # Read at each compile, not at import: the job's own folder, even where torch was imported earlier
    # (the warm job server) and bitsandbytes' import already compiled into the default one.
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = str(cache_dir)
    # One graph per block class and guard set; every layer but the first hits it. The default limit (8)
    # counts per code object, and all the layers share one, so a deep model would fall back to eager.
    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    # With the embedding frozen (lora), the first block's input needs no gradient and every other block's
    # does: dynamo guards on that, so the block would be compiled twice. Asking a gradient of the embedding's
    # output costs one block's input gradient in the backward and halves the compiling. Not for freeze, where
    # it would send the backward through every frozen layer below the trained ones.
    if every_block_trains and hasattr(model, "enable_input_require_grads"):
        model.enable_input_require_grads()
    for layer in layers:
        layer.compile(dynamic=True)
    return len(layers), type(layers[0]).__name__


def compile_counters() -> dict:
    """What dynamo and inductor did in this process: graphs compiled, and inductor cache hits and misses."""
    from torch._dynamo.utils import counters

    return {
        "graphs": int(counters["stats"]["unique_graphs"]),
        "graph_breaks": int(sum(counters["graph_break"].values())),
        "fx_cache_hits": int(counters["inductor"]["fxgraph_cache_hit"]),
        "fx_cache_misses": int(counters["inductor"]["fxgraph_cache_miss"]),
        "autograd_cache_hits": int(counters["aot_autograd"]["autograd_cache_hit"]),
        "autograd_cache_misses": int(counters["aot_autograd"]["autograd_cache_miss"]),
    }
