"""Processors of video-capable models (Qwen2-VL, Qwen2.5-VL), loaded and saved without their video processor.

transformers 5 builds these processors with a video processor, and every video processor needs torchvision,
which this install leaves out (PyPI's torchvision breaks transformers beside the CPU torch). Their image
processors and tokenizers need nothing of it, and image-text training never calls the video processor.
So an image-only twin of the processor class (same name, so saved folders name the real class) loads the
folder's image processor (the PIL one, as AutoImageProcessor picks here), tokenizer and chat template as
transformers does, and leaves the video processor out. Saving writes the folder's video processor settings
back (or, for a folder that had none, the settings its image processor implies), so a transformers with
torchvision loads the saved folder with AutoProcessor as the original.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path

# processor class → the video processor class a transformers with torchvision would build beside it
IMAGE_ONLY = {"Qwen2VLProcessor": "Qwen2VLVideoProcessor", "Qwen2_5_VLProcessor": "Qwen2VLVideoProcessor"}
# What a video processor shares with its model's image processor: the patch grid the vision tower reads.
SHARED_WITH_VIDEO = ("patch_size", "temporal_patch_size", "merge_size", "image_mean", "image_std")


def processor_class_of(path: str | Path) -> str:
    """The processor class a saved folder names (processor_config.json, or the legacy preprocessor_config.json)."""
    for name in ("processor_config.json", "preprocessor_config.json", "tokenizer_config.json"):
        try:
            found = json.loads((Path(path) / name).read_text(encoding="utf-8")).get("processor_class")
        except (OSError, ValueError, AttributeError):
            continue
        if found:
            return found
    return ""


def load_image_only(path: str | Path, trust_remote_code: bool = False):
    """The folder's processor without its video processor, for a class of IMAGE_ONLY (KeyError otherwise)."""
    name = processor_class_of(path)
    video_type = IMAGE_ONLY[name]
    processor = image_only_class(name).from_pretrained(str(path), trust_remote_code=trust_remote_code)
    processor.video_settings = _video_settings(Path(path)) or implied_video_settings(processor, video_type)
    return processor


def image_only(processor_class: type, image_processor, tokenizer, **settings):
    """A new image-only processor of processor_class (the tiny test models' and builders' way in)."""
    processor = image_only_class(processor_class.__name__)(image_processor, tokenizer, **settings)
    processor.video_settings = implied_video_settings(processor, IMAGE_ONLY[processor_class.__name__])
    return processor


@cache
def image_only_class(name: str) -> type:
    import transformers

    base = getattr(transformers, name)

    class ImageOnly(base):
        video_settings: dict = {}

        @classmethod
        def get_attributes(cls):
            return [a for a in super().get_attributes() if a != "video_processor"]

        @classmethod
        def from_args_and_dict(cls, args, processor_dict, **kwargs):
            processor_dict = {k: v for k, v in processor_dict.items() if k != "video_processor"}
            return super().from_args_and_dict(args, processor_dict, **kwargs)

        def to_dict(self):
            saved = super().to_dict()
            saved["video_processor"] = dict(self.video_settings)
            return saved

    ImageOnly.__name__ = ImageOnly.__qualname__ = name  # saved folders name the real class
    return ImageOnly


def _video_settings(folder: Path) -> dict:
    try:
        nested = json.loads((folder / "processor_config.json").read_text(encoding="utf-8")).get("video_processor")
    except (OSError, ValueError, AttributeError):
        nested = None
    if isinstance(nested, dict):
        return nested
    try:
        return json.loads((folder / "video_preprocessor_config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def implied_video_settings(processor, video_type: str) -> dict:
    images = processor.image_processor.to_dict()
    return {"video_processor_type": video_type, **{k: images[k] for k in SHARED_WITH_VIDEO if k in images}}
