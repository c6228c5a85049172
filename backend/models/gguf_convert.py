"""A .gguf file's weights as one safetensors file, tensor by tensor, in the precision the runs will use.

transformers' own GGUF load dequantizes every tensor into a dict and then copies the dict into the
model, in fp32: a 268M Gemma 3 peaked at 3.34 GB (12.5 bytes a parameter), so a 7B model would need
about 85 GB to convert. Here the file is memory-mapped (gguf's GGUFReader), and each tensor in turn
is dequantized (gguf's `dequantize`), renamed and reshaped as transformers' GGUF loader would do it
(its `get_gguf_hf_weights_map` and per-architecture `TENSOR_PROCESSORS`, reused rather than copied),
cast to bf16 and appended to disk; the mapped pages it read are then dropped. Peak memory is the
largest single tensor in fp32 beside the process itself, not the model.

safetensors' own writer needs every tensor in memory at once, so the file is written here: the tensor
bytes go to a body file as they come, then the header (names, dtypes, shapes, offsets) and the body
are joined. The result is read by safetensors and transformers as any other.

Architectures that transformers loads through its newer GGUF path (`is_gguf_arch_supported`: Qwen3.5,
LFM2), whose conversions are whole-model weight transforms, are converted by transformers itself.
"""

from __future__ import annotations

import json
import mmap
import os
import shutil
import struct
from pathlib import Path

SAFETENSORS_DTYPES = {"bfloat16": "BF16", "float16": "F16", "float32": "F32"}
WEIGHTS_FILE = "model.safetensors"
COPY_BLOCK = 64 << 20
CHUNK_ELEMENTS = 1 << 22  # values dequantized at once: 16 MB of float32 and its temporaries


def gguf_architecture(reader) -> str:
    from transformers.modeling_gguf_pytorch_utils import read_field

    return read_field(reader, "general.architecture")[0]


def streams(source: Path) -> bool:
    """Whether this file converts tensor by tensor here (else transformers' newer GGUF path loads it whole)."""
    from gguf import GGUFReader
    from transformers.integrations.gguf.utils import is_gguf_arch_supported

    return not is_gguf_arch_supported(gguf_architecture(GGUFReader(source)))


def write_weights(source: Path, staging: Path, dtype: str = "bfloat16") -> object:
    """The GGUF's tensors as staging/model.safetensors in dtype; returns the model's config (not yet saved)."""
    import torch
    from gguf import GGUFReader
    from transformers import AutoConfig, AutoModelForCausalLM
    from transformers.modeling_gguf_pytorch_utils import (
        TENSOR_PROCESSORS,
        TensorProcessor,
        get_gguf_hf_weights_map,
        load_gguf_checkpoint,
    )

    torch_dtype = getattr(torch, dtype)
    config = AutoConfig.from_pretrained(source.parent, gguf_file=source.name)
    # What from_pretrained's dtype "auto" loads: fp32, as before, whatever the weights are stored in. The chat
    # engine, export and judges load with auto, and bf16 arithmetic on a CPU without native bf16 is emulated
    # and slow; a training job names its own dtype (Precision.load_dtype).
    config.dtype = torch.float32
    # The model's parameter names, on the meta device: no memory, but what the name map is built from.
    with torch.device("meta"):
        skeleton = AutoModelForCausalLM.from_config(config)
    # What save_pretrained would have recorded: the model class. Readers of the folder need it (the Model tab's
    # architecture line, llama.cpp's converter, which refuses a config without it).
    config.architectures = [type(skeleton).__name__]
    settings = load_gguf_checkpoint(str(source), return_tensors=False)["config"]
    reader = GGUFReader(source)
    processor = TENSOR_PROCESSORS.get(gguf_architecture(reader), TensorProcessor)(config=settings)
    names = get_gguf_hf_weights_map(skeleton, processor)
    wanted = set(skeleton.state_dict())
    del skeleton

    writer = SafetensorsWriter(staging / WEIGHTS_FILE)
    # Where a processor builds a tensor itself (MoE experts: gate and up interleaved into one, over two calls),
    # it puts it here; written once the file moves on to the next block, whose tensors cannot touch it.
    moved: dict = {}
    block = None
    for tensor in reader.tensors:
        if _block_of(tensor.name) != block:
            block = _block_of(tensor.name)
            _flush(moved, writer, torch_dtype)
        weights = dequantized(tensor)
        result = processor.process(
            weights=weights, name=tensor.name, tensor_key_mapping=names, parsed_parameters={"tensors": moved}
        )
        if result.weights is not None and result.name in names and names[result.name] in wanted:
            writer.add(names[result.name], _as_torch(result.weights).to(torch_dtype))
        del weights, result
        _drop_pages(reader)
    _flush(moved, writer, torch_dtype)
    writer.close()
    return config


def _block_of(name: str) -> str | None:
    """The decoder block a GGUF tensor belongs to ('blk.3.attn_q.weight' -> '3'); None outside the blocks."""
    parts = name.split(".")
    return parts[1] if len(parts) > 2 and parts[0] == "blk" else None


def _flush(moved: dict, writer, dtype) -> None:
    for name in list(moved):
        writer.add(name, _as_torch(moved.pop(name)).to(dtype))


def dequantized(tensor):
    """One GGUF tensor as float32 numpy in transformers' layout, dequantized a few rows at a time.

    Whole-tensor dequantization makes several float temporaries of the tensor's size (a 152k-token embedding:
    ~1 GB each); by rows, only the float32 result is whole. Quantized types go through transformers' torch
    kernels where it has one, the rest (F16, BF16, Q5_0, ...) through the gguf package's.
    """
    import numpy as np
    from gguf import dequantize
    from transformers.integrations.gguf.dequant import GGML_BLOCK
    from transformers.integrations.gguf.dequant import dequantize as torch_dequantize

    shape = tuple(int(d) for d in reversed(tensor.shape))  # GGUF lists the fastest-varying dimension first
    data = tensor.data.reshape(-1, tensor.data.shape[-1]) if tensor.data.ndim > 1 else tensor.data.reshape(1, -1)
    out = np.empty((data.shape[0], int(np.prod(shape)) // data.shape[0]), dtype=np.float32)
    step = max(1, CHUNK_ELEMENTS // out.shape[1])
    for start in range(0, data.shape[0], step):
        rows = data[start : start + step]
        if int(tensor.tensor_type) in GGML_BLOCK:
            import torch

            flat = torch_dequantize(torch.from_numpy(np.array(rows)).reshape(-1), int(tensor.tensor_type))
            out[start : start + step] = flat.numpy().reshape(len(rows), -1)
        else:
            out[start : start + step] = dequantize(rows, tensor.tensor_type).reshape(len(rows), -1)
    return out.reshape(shape)


def _as_torch(weights):
    import numpy as np
    import torch

    if isinstance(weights, torch.Tensor):
        return weights
    # A float32 tensor comes straight from the read-only map; torch wants memory it may write.
    return torch.from_numpy(weights if weights.flags.writeable else np.array(weights))


def _drop_pages(reader) -> None:
    """Forget the mapped pages read so far: clean file pages, read again from disk if ever needed, not held in RSS."""
    mapped = getattr(reader.data, "_mmap", None)
    if mapped is not None and hasattr(mmap, "MADV_DONTNEED"):
        mapped.madvise(mmap.MADV_DONTNEED)


class SafetensorsWriter:
    """A safetensors file written one tensor at a time: the bytes into a body file, then the header and the body."""

    def __init__(self, path: Path):
        self.path = path
        self.body_path = path.with_name(path.name + ".body")
        self.body = open(self.body_path, "wb")
        self.header: dict = {"__metadata__": {"format": "pt"}}
        self.offset = 0

    def add(self, name: str, tensor) -> None:
        import torch

        tensor = tensor.contiguous()
        raw = tensor.view(-1).view(dtype=torch.uint8).numpy()
        self.body.write(memoryview(raw))
        size = raw.nbytes
        self.header[name] = {
            "dtype": SAFETENSORS_DTYPES[str(tensor.dtype).removeprefix("torch.")],
            "shape": list(tensor.shape),
            "data_offsets": [self.offset, self.offset + size],
        }
        self.offset += size

    def close(self) -> None:
        self.body.close()
        header = json.dumps(self.header, separators=(",", ":")).encode()
        header += b" " * (-len(header) % 8)  # the data starts 8-byte aligned
        with open(self.path, "wb") as out, open(self.body_path, "rb") as body:
            out.write(struct.pack("<Q", len(header)))
            out.write(header)
            shutil.copyfileobj(body, out, COPY_BLOCK)
        os.remove(self.body_path)
