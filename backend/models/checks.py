"""Whether a model can be used, decided from its files before the slow load.

A model folder or a .gguf file that cannot train (an architecture transformers does not know,
missing weights or tokenizer, code that would run without the opt-in, a file that is not GGUF)
is refused here in one line that names the path, the reason and what to do. The app calls
check_model when a run is started, so the browser and the API hear it before anything is
queued; the job reaches the same checks through backend.models.sources.resolve_model.

Nothing here imports torch: the app process never loads it. transformers' own tables of the
architectures it reads (config model types, GGUF architectures) are plain dicts in modules
that do not import torch.
"""

from __future__ import annotations

import functools
import json
import struct
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError

GGUF_MAGIC = b"GGUF"
# Any one of these makes a folder's weights loadable by from_pretrained (sharded ones via their index).
WEIGHT_PATTERNS = (
    "*.safetensors",
    "pytorch_model*.bin",
    "model.safetensors.index.json",
    "pytorch_model.bin.index.json",
)
WEIGHT_INDEXES = ("model.safetensors.index.json", "pytorch_model.bin.index.json")
# A tokenizer needs its vocabulary in one of these forms; tokenizer_config.json alone is not enough.
TOKENIZER_FILES = (
    "tokenizer.json",
    "tokenizer.model",
    "vocab.json",
    "vocab.txt",
    "spiece.model",
    "sentencepiece.bpe.model",
)
REMOTE_CODE_HINT = "turn on trust_remote_code only if you trust its source, since that code runs with your permissions"


def check_model(spec: str, trust_remote_code: bool = False) -> None:
    """The app's check at train start: a model folder or GGUF file on this machine must be usable.

    'default', hub ids and names that are no path pass: the job resolves those (and refuses what does
    not exist in one line of its own).
    """
    spec = (spec or "").strip()
    if not spec or spec == "default":
        return
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_folder(path)
        check_remote_code(path, trust_remote_code)
    elif path.is_file():
        check_gguf_file(path)


# ---- Hugging Face model folders ------------------------------------------------------------------
def check_model_folder(path: Path) -> None:
    """Refuse a folder from_pretrained cannot load: no config, an unknown architecture, no weights or tokenizer."""
    if not (path / "config.json").exists():
        if (path / "adapter_config.json").exists():
            raise TuneForgeError(
                f"model folder {path} is a PEFT adapter, not a model; train on its base model "
                "(adapter_config.json's base_model_name_or_path), or chat with the adapter in the Chat tab"
            )
        raise TuneForgeError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
    config = _read_json(path / "config.json", f"model folder {path}")
    _check_architecture(path, config)
    _check_weights(path)
    _check_tokenizer(path)


def check_remote_code(path: Path, trusted: bool) -> None:
    """A model whose config or tokenizer names its own Python classes (auto_map) needs the owner's opt-in."""
    if trusted:
        return
    for name in ("config.json", "tokenizer_config.json"):
        if (path / name).exists() and "auto_map" in _read_json(path / name, f"model folder {path}"):
            raise TuneForgeError(f"model '{path}' ships its own Python code (auto_map in {name}); {REMOTE_CODE_HINT}")


def _check_architecture(path: Path, config: dict[str, Any]) -> None:
    if "auto_map" in config:
        return  # its own code defines the architecture; check_remote_code decides whether it may run
    model_type = config.get("model_type")
    if not model_type:
        raise TuneForgeError(f"model folder {path}: config.json names no model_type, so no architecture can load it")
    import transformers
    from transformers.models.auto.auto_mappings import CONFIG_MAPPING_NAMES

    if model_type not in CONFIG_MAPPING_NAMES:
        raise TuneForgeError(
            f"model folder {path}: architecture '{model_type}' is not supported by transformers "
            f"{transformers.__version__}; upgrade transformers, or choose a model of a supported architecture"
        )


def _check_weights(path: Path) -> None:
    if not any(next(path.glob(pattern), None) for pattern in WEIGHT_PATTERNS):
        raise TuneForgeError(
            f"model folder {path} has no weights (no *.safetensors or pytorch_model*.bin); "
            "copy the model's weight files into it"
        )
    for index in WEIGHT_INDEXES:
        if (path / index).exists():
            shards = set(_read_json(path / index, f"model folder {path}").get("weight_map", {}).values())
            missing = sorted(name for name in shards if not (path / name).exists())
            if missing:
                raise TuneForgeError(
                    f"model folder {path} lacks {len(missing)} of its {len(shards)} weight shards "
                    f"({', '.join(missing[:3])}{'...' if len(missing) > 3 else ''}); copy them in"
                )


def _check_tokenizer(path: Path) -> None:
    if not any((path / name).exists() for name in TOKENIZER_FILES):
        raise TuneForgeError(
            f"model folder {path} has no tokenizer ({', '.join(TOKENIZER_FILES[:4])}...); "
            "copy the model's tokenizer files into it"
        )
    if (path / "tokenizer_config.json").exists():
        _read_json(path / "tokenizer_config.json", f"model folder {path}")
    if (path / "tokenizer.json").exists():
        stat = (path / "tokenizer.json").stat()
        if reason := _tokenizer_problem(str(path / "tokenizer.json"), stat.st_size, stat.st_mtime_ns):
            raise TuneForgeError(
                f"model folder {path}: its tokenizer.json will not load ({reason[:200]}); "
                "copy the model's tokenizer files in again"
            )


# Parsing a 49k-token tokenizer.json takes 0.2-0.4 s, and every job, chat and export load checks its
# model: the answer is kept per file version (size and mtime), so an edited file is parsed again.
@functools.lru_cache(maxsize=64)
def _tokenizer_problem(file: str, size: int, mtime_ns: int) -> str | None:
    from tokenizers import Tokenizer

    try:
        Tokenizer.from_file(file)
    except Exception as exc:  # noqa: BLE001 - the Rust parser raises plain Exception subclasses
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return None


def _read_json(path: Path, where: str) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as exc:
        raise TuneForgeError(f"{where}: cannot read {path.name} ({str(exc).splitlines()[0][:200]})") from None
    if not isinstance(value, dict):
        raise TuneForgeError(f"{where}: {path.name} is not a JSON object")
    return value


# ---- GGUF files ------------------------------------------------------------------------------------
def check_gguf_file(path: Path) -> dict[str, Any]:
    """A GGUF file transformers can convert: its header, architecture and tokenizer. Returns its metadata."""
    metadata = gguf_metadata(path)
    architecture = metadata.get("general.architecture")
    if not isinstance(architecture, str) or not architecture:
        raise TuneForgeError(f"model file {path} names no general.architecture; it is not a model GGUF")
    supported = gguf_architectures()
    if _arch_key(architecture) not in {_arch_key(a) for a in supported}:
        import transformers

        raise TuneForgeError(
            f"model file {path}: GGUF architecture '{architecture}' cannot be read by transformers "
            f"{transformers.__version__} (it reads {', '.join(sorted(supported))}); "
            "use the model's Hugging Face folder instead"
        )
    if "tokenizer.ggml.model" not in metadata or "tokenizer.ggml.tokens" not in metadata:
        raise TuneForgeError(
            f"model file {path} holds no tokenizer (tokenizer.ggml.* metadata); "
            "use a GGUF that includes one, or the model's Hugging Face folder"
        )
    kinds = gguf_tokenizer_kinds()
    if kinds and metadata["tokenizer.ggml.model"] not in kinds:
        raise TuneForgeError(
            f"model file {path}: transformers cannot build its '{metadata['tokenizer.ggml.model']}' tokenizer "
            f"(it builds {', '.join(sorted(kinds))}); use the model's Hugging Face folder instead"
        )
    return metadata


def gguf_architectures() -> set[str]:
    """The GGUF architectures this transformers converts (from two tables: the legacy reader's and the new one's)."""
    from transformers.integrations.ggml import GGUF_CONFIG_MAPPING

    names = set(GGUF_CONFIG_MAPPING) - {"general", "tokenizer"}
    try:
        from transformers.integrations.gguf.gguf_config_mapping import GGUF_CONFIG_ARCHS
    except ImportError:  # a transformers from before the second reader
        return names
    return names | set(GGUF_CONFIG_ARCHS)


def gguf_tokenizer_kinds() -> set[str]:
    """The tokenizer.ggml.model values this transformers builds a tokenizer from; empty when it does not say."""
    try:
        from transformers.integrations.gguf.gguf_tokenizer_mapping import GGUF_TOKENIZER_TYPES
    except ImportError:  # an older transformers keeps this table elsewhere; the conversion itself will tell
        return set()
    return set(GGUF_TOKENIZER_TYPES)


def _arch_key(name: str) -> str:
    """llama.cpp and transformers spell some architectures differently: qwen2moe / qwen2_moe, gpt-oss / gpt_oss."""
    key = name.lower().replace("-", "").replace("_", "")
    return "t5" if key.startswith("t5") else key


# GGUF value types (ggml's gguf.md): fixed-size scalars by struct format, then string (8) and array (9).
_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def gguf_metadata(path: Path) -> dict[str, Any]:
    """A GGUF file's key/value metadata, arrays given as their length; reads the header, never the tensors.

    The gguf package's reader takes seconds on a large vocabulary; this reads what the checks need in a
    fraction of that, and refuses a file that is not GGUF in one line.
    """
    try:
        with open(path, "rb") as f:
            if f.read(4) != GGUF_MAGIC:
                raise TuneForgeError(
                    f"model file {path} is not a GGUF file (it does not start with 'GGUF'); "
                    "give a .gguf model file or a Hugging Face model folder"
                )
            (version,) = _unpack(f, "<I")
            if version < 2:
                raise TuneForgeError(f"model file {path} is GGUF version {version}, too old to read; reconvert it")
            _, count = _unpack(f, "<QQ")
            return {_read_string(f): _read_value(f, _unpack(f, "<I")[0]) for _ in range(count)}
    except OSError as exc:
        raise TuneForgeError(f"model file {path}: cannot read it ({exc.strerror or exc})") from None
    except (struct.error, UnicodeDecodeError, ValueError) as exc:
        raise TuneForgeError(f"model file {path}: its GGUF header is damaged or cut short ({exc})") from None


def _unpack(f, fmt: str) -> tuple:
    size = struct.calcsize(fmt)
    data = f.read(size)
    if len(data) != size:
        raise ValueError("the file ends inside its header")
    return struct.unpack(fmt, data)


def _read_string(f) -> str:
    (length,) = _unpack(f, "<Q")
    if length > 1 << 24:
        raise ValueError(f"a {length}-byte string")
    data = f.read(length)
    if len(data) != length:
        raise ValueError("the file ends inside its header")
    return data.decode("utf-8")


def _read_value(f, kind: int):
    if kind in _SCALARS:
        return _unpack(f, _SCALARS[kind])[0]
    if kind == _STRING:
        return _read_string(f)
    if kind == _ARRAY:
        item, length = _unpack(f, "<IQ")
        if item in _SCALARS:
            f.seek(struct.calcsize(_SCALARS[item]) * length, 1)
        elif item == _STRING:
            for _ in range(length):
                f.seek(_unpack(f, "<Q")[0], 1)
        else:
            raise ValueError(f"an array of type {item}")
        return length
    raise ValueError(f"unknown value type {kind}")
