"""Vision-language models: telling one apart, loading it with its processor, and what trains in it.

Shared by the job (backend/training/vision.py) and the app (chat, export). A model is a vision-language
one when its config.json has a vision_config; it loads with transformers' AutoModelForImageTextToText and
AutoProcessor. Image processors are the PIL ones: torchvision stays out of this install, and transformers
picks the PIL backend by itself when torchvision is absent.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from backend.errors import TuneForgeError

VISION_DEMO = "vision-demo"  # the studio's own small vision-language model (backend/models/vision_build.py)
# Where each architecture keeps its parts (module names in transformers 5): the image encoder, and the
# projector that maps its features into the language model. Qwen2-VL's projector (merger) sits inside its encoder.
TOWERS = ("vision_model", "vision_tower", "visual")
PROJECTORS = ("connector", "multi_modal_projector", "merger")
# What a quantized base (QLoRA) keeps in full precision: the image encoder and projector, which a run may
# train whole (a 4-bit weight takes no gradient) and which are small beside the language model; and the head,
# which bitsandbytes leaves out by default (a list of our own replaces its defaults). Patterns as
# transformers matches them against full module names.
UNQUANTIZED = [rf"(.*\.)?({'|'.join(TOWERS + PROJECTORS)})(\..*)?", "lm_head"]


def config_of(path: str | Path) -> dict:
    try:
        return json.loads((Path(path) / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def is_vision_folder(path: str | Path) -> bool:
    return "vision_config" in config_of(path)


def is_vision_spec(spec: str) -> bool:
    """Whether a `model:` names a vision-language model, without loading or converting anything."""
    spec = (spec or "").strip()
    return spec == VISION_DEMO or Path(spec).expanduser().is_dir() and is_vision_folder(Path(spec).expanduser())


def load_processor(path: str | Path, trust_remote_code: bool = False):
    from transformers import AutoProcessor

    from backend.models.image_only_processors import IMAGE_ONLY, load_image_only, processor_class_of

    try:
        if processor_class_of(path) in IMAGE_ONLY:  # its video processor needs torchvision; images do not
            return load_image_only(path, trust_remote_code)
        return AutoProcessor.from_pretrained(str(path), trust_remote_code=trust_remote_code)
    except ImportError as exc:  # a video processor that needs torchvision (SmolVLM2 in transformers 5)
        raise TuneForgeError(
            f"model {Path(str(path)).name}: its processor needs {_missing(exc)}, which this install leaves out "
            "(it breaks transformers' imports here); use a Qwen2-VL, Qwen2.5-VL, Idefics3, LLaVA or Gemma 3 "
            "model, or vision-demo"
        ) from None
    except (OSError, ValueError, TypeError, KeyError) as exc:
        raise TuneForgeError(
            f"model {Path(str(path)).name}: its processor will not load ({str(exc).splitlines()[0][:160]}); "
            "a vision-language model needs its processor files (processor_config.json, preprocessor_config.json)"
        ) from None


def _missing(exc: ImportError) -> str:
    found = re.search(r"requires the (\w+) library|Package `(\w+)` is required", str(exc))
    return next(name for name in found.groups() if name).lower() if found else "a library"


def load_vision_model(path: str | Path, dtype=None, trust_remote_code: bool = False, **loading):
    from transformers import AutoModelForImageTextToText

    from backend.models.sources import _hub_friendly

    if loading.get("quantization_config") is not None:
        loading["quantization_config"].llm_int8_skip_modules = UNQUANTIZED
    from backend.models.head_input import read_contiguous_head_input

    try:
        model = _hub_friendly(
            AutoModelForImageTextToText.from_pretrained,
            str(path),
            dtype=dtype or "auto",
            trust_remote_code=trust_remote_code,
            **loading,
        )
    except ValueError as exc:
        if "Unrecognized configuration class" not in str(exc):
            raise
        kind = config_of(path).get("model_type", "this architecture")
        raise TuneForgeError(f"model {Path(str(path)).name}: transformers cannot load {kind} for image-text") from None
    return read_contiguous_head_input(model)


def image_marker(processor) -> str:
    """What a processor expects in the text where an image goes, before it expands it into image tokens."""
    name = type(processor).__name__
    if name.startswith(("Qwen2VL", "Qwen2_5_VL")):
        return "<|vision_start|><|image_pad|><|vision_end|>"
    if name.startswith("Gemma3"):
        return processor.boi_token
    return processor.image_token


def image_token_id(processor) -> int:
    """The id the image's features replace, one per image token (never a trained label)."""
    # Gemma 3's processor calls its begin-of-image marker image_token; its tokenizer names the real one.
    token = getattr(processor.tokenizer, "image_token", None) or getattr(processor, "image_token", None)
    return processor.tokenizer.convert_tokens_to_ids(token or "<image>")


def part_names(model, names: tuple[str, ...]) -> list[str]:
    """Full names of the model's modules that are one of its parts (a tower or a projector), outermost only."""
    found = [n for n, _ in model.named_modules() if n.rsplit(".", 1)[-1] in names]
    return [n for n in found if not any(n.startswith(outer + ".") for outer in found)]


def freeze_parts(model, freeze_tower: bool, freeze_projector: bool) -> None:
    """Full fine-tuning: no gradient for the parts the run keeps as they are."""
    projectors = part_names(model, PROJECTORS)
    for tower in part_names(model, TOWERS) if freeze_tower else []:
        for name, param in model.get_submodule(tower).named_parameters():
            inside_projector = any(f"{tower}.{name}".startswith(p + ".") for p in projectors)
            if not inside_projector or freeze_projector:
                param.requires_grad_(False)
    for projector in projectors if freeze_projector else []:
        model.get_submodule(projector).requires_grad_(False)
    if not freeze_projector:
        for projector in projectors:
            model.get_submodule(projector).requires_grad_(True)


def lora_scope(model, freeze_tower: bool, freeze_projector: bool) -> dict:
    """LoraConfig keywords: no adapter on a frozen tower or on the projector, and a trained projector kept whole.

    As LLaMA-Factory: an unfrozen tower gets adapters like the language model; an unfrozen projector is
    trained in full (modules_to_save), since it is small and new to the task.
    """
    towers = [re.escape(n) for n in part_names(model, TOWERS)]
    projectors = [re.escape(n) for n in part_names(model, PROJECTORS)]
    excluded = projectors + (towers if freeze_tower else [])
    scope: dict = {}
    if excluded:
        # A projector inside a tower (Qwen2-VL's merger) is excluded by its own name, not only by the tower's.
        scope["exclude_modules"] = rf"^({'|'.join(excluded)})(\..*)?$"
    if not freeze_projector and projectors:
        scope["modules_to_save"] = [n.rsplit(".", 1)[-1] for n in part_names(model, PROJECTORS)]
    return scope
