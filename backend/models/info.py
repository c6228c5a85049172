"""What a model is, read from its folder without loading a weight: architecture, sizes, and every tensor's shape.

Safetensors files start with a JSON header that names each tensor with its shape and dtype, so the
parameter count and the shape of every linear layer come from a few kilobytes per file, without
torch: the Model tab stays fast and the app never loads torch for it. A folder without safetensors
(pytorch_model.bin only) or a hub id not in the local Hugging Face cache has no such header to read,
and says so in one line.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from pathlib import Path

from backend.errors import TuneForgeError
from backend.models.checks import check_gguf_file
from backend.models.sources import converted_gguf_dir, resolve_model

LAYER_INDEX = re.compile(r"\.(\d+)\.")
HEADER_LIMIT = 100 * 2**20  # a header is kilobytes; anything near this is not a safetensors file
# Bytes per element of the dtypes a safetensors file may store.
DTYPE_BYTES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1, "BOOL": 1}
DTYPE_BYTES.update({"F8_E4M3": 1, "F8_E5M2": 1})


@dataclass(frozen=True)
class Linear:
    """One 2-D weight inside the decoder's layers, as PEFT and bitsandbytes see it (a torch Linear)."""

    name: str  # the module's name, e.g. model.layers.3.self_attn.q_proj
    in_features: int
    out_features: int
    layer: int | None  # the decoder layer it belongs to

    @property
    def weights(self) -> int:
        return self.in_features * self.out_features


@dataclass(frozen=True)
class ModelShape:
    """A model's sizes, from config.json and its safetensors headers."""

    path: str
    model_type: str  # llama, qwen2, ... ('' when config.json names none)
    architecture: str  # LlamaForCausalLM, ...
    parameters: int  # every stored tensor's elements (a tied head is stored once)
    stored_bytes: int  # as the files hold them
    hidden_size: int
    intermediate_size: int
    num_layers: int
    vocab_size: int
    linears: tuple[Linear, ...]  # the decoder layers' linear weights: what LoRA adapts and 4-bit quantizes
    layer_parameters: tuple[int, ...]  # every parameter of each decoder layer (freeze trains some of these)
    head_untied: bool  # an lm_head stored apart from the embedding (trained by full fine-tuning, not LoRA)
    # A vision-language model's other parts, kept out of the decoder's numbers above: the image encoder's
    # layer-indexed linears (adapted by LoRA when the tower trains) and each part's parameters.
    tower_linears: tuple[Linear, ...] = ()
    tower_parameters: int = 0
    projector_parameters: int = 0

    @property
    def linear_weights(self) -> int:
        return sum(linear.weights for linear in self.linears)


def inspect_model(spec: str, task: str = "sft") -> ModelShape:
    """The shape of a model spec ('default', a folder, a hub id in the local cache), or one line why not."""
    gguf = Path((spec or "").strip()).expanduser()
    if gguf.suffix.lower() == ".gguf" and gguf.is_file():
        folder = converted_gguf_dir(gguf)
        if folder is None:
            architecture = check_gguf_file(gguf).get("general.architecture", "unknown")
            raise TuneForgeError(
                f"{gguf.name}: a {architecture} GGUF, not converted yet; its first run converts it "
                "(minutes for a large file), and then its sizes show here"
            )
        return read_shape(folder)
    resolved = resolve_model(spec, progress=lambda _message: None, task=task)
    folder = Path(resolved)
    if not folder.is_dir():
        folder = _cached_hub_folder(resolved)
    return read_shape(folder)


def read_shape(folder: Path) -> ModelShape:
    config = _read_config(folder)
    files = sorted(folder.glob("*.safetensors"))
    if not files:
        raise TuneForgeError(
            f"{folder.name} has no safetensors files, whose headers give the sizes without loading the weights"
        )
    tensors = {}
    for path in files:
        tensors.update(safetensors_header(path))
    return _shape(folder, config, tensors)


def safetensors_header(path: Path) -> dict[str, dict]:
    """name → {dtype, shape} of every tensor in one safetensors file, from its header alone."""
    try:
        with open(path, "rb") as f:
            (size,) = struct.unpack("<Q", f.read(8))
            if size > HEADER_LIMIT:
                raise ValueError(f"a header of {size} bytes")
            header = json.loads(f.read(size))
    except (OSError, ValueError, struct.error) as exc:
        raise TuneForgeError(f"{path.name}: not a readable safetensors file ({exc})") from None
    header.pop("__metadata__", None)
    return header


def _shape(folder: Path, config: dict, tensors: dict[str, dict]) -> ModelShape:
    text = config.get("text_config") or config  # multimodal configs keep the language model's sizes here
    layers = int(text.get("num_hidden_layers") or 0)
    linears, per_layer = [], [0] * layers
    parameters = stored = 0
    head_untied = False
    tower_linears, parts = [], {"tower": 0, "projector": 0}
    for name, meta in tensors.items():
        count = _elements(meta["shape"])
        parameters += count
        stored += count * DTYPE_BYTES.get(meta.get("dtype", "F32"), 4)
        match = LAYER_INDEX.search(f".{name}.")
        part = vision_part(name) if "vision_config" in config else ""
        if part:
            parts[part] += count
            if part == "tower" and match and len(meta["shape"]) == 2 and name.endswith(".weight"):
                tower_linears.append(Linear(name.removesuffix(".weight"), meta["shape"][1], meta["shape"][0], None))
            continue
        index = int(match.group(1)) if match and "layer" in name else None
        if index is not None and index < layers:
            per_layer[index] += count
        if name.endswith("lm_head.weight"):
            head_untied = True
            if config.get("tie_word_embeddings"):  # stored, but loaded as the embedding itself
                parameters -= count
        elif index is not None and len(meta["shape"]) == 2 and name.endswith(".weight"):
            out_features, in_features = meta["shape"]
            linears.append(Linear(name.removesuffix(".weight"), in_features, out_features, index))
    return ModelShape(
        path=str(folder),
        model_type=str(config.get("model_type", "")),
        architecture=(config.get("architectures") or [""])[0],
        parameters=parameters,
        stored_bytes=stored,
        hidden_size=int(text.get("hidden_size") or text.get("d_model") or 0),
        intermediate_size=int(text.get("intermediate_size") or 4 * int(text.get("hidden_size") or 0)),
        num_layers=layers,
        vocab_size=int(text.get("vocab_size") or 0),
        linears=tuple(linears),
        layer_parameters=tuple(per_layer),
        head_untied=head_untied and not config.get("tie_word_embeddings", False),
        tower_linears=tuple(tower_linears),
        tower_parameters=parts["tower"],
        projector_parameters=parts["projector"],
    )


def vision_part(name: str) -> str:
    """'projector', 'tower' or '' for a tensor of a vision-language model (a projector inside the tower is one)."""
    from backend.models.vision import PROJECTORS, TOWERS

    modules = name.split(".")
    if any(m in PROJECTORS for m in modules):
        return "projector"
    return "tower" if any(m in TOWERS for m in modules) else ""


def _elements(shape: list[int]) -> int:
    count = 1
    for dim in shape:
        count *= dim
    return count


def _read_config(folder: Path) -> dict:
    try:
        config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TuneForgeError(f"{folder} has no config.json; is it a Hugging Face model folder?") from None
    except (OSError, ValueError) as exc:
        raise TuneForgeError(f"{folder}/config.json: cannot read it ({exc})") from None
    if not isinstance(config, dict):
        raise TuneForgeError(f"{folder}/config.json is not a JSON object")
    return config


def _cached_hub_folder(hub_id: str) -> Path:
    """A hub model already in the local Hugging Face cache; the estimate never downloads."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import LocalEntryNotFoundError

    try:
        return Path(snapshot_download(hub_id, local_files_only=True))
    except (LocalEntryNotFoundError, OSError, ValueError):
        raise TuneForgeError(
            f"{hub_id} is not downloaded yet; the estimate reads local files only and never downloads"
        ) from None
