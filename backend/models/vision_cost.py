"""What one image costs a vision-language model: its tokens in the language model, and the image encoder's work.

The largest image a run reads is image_max_pixels (larger ones are scaled down first), as a square. Its
tokens are what the model's own processor puts in the text for it (transformers'
`_get_num_multimodal_tokens`: tiles, separators and all). The encoder reads patches: every patch of the
image for encoders that take any size (Qwen2-VL's), and the fixed-size square of each tile for the others
(SigLIP, CLIP), tiles being what the processor cuts (Idefics3 splits a large image; the others read one).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from backend.errors import TuneForgeError


@dataclass(frozen=True)
class ImageCost:
    tokens: int  # in the language model's sequence, for the largest image
    positions: int  # the image encoder's sequence for it
    hidden_size: int  # the encoder's
    intermediate_size: int
    layers: int


def image_cost(folder: str | Path, max_pixels: int) -> ImageCost | None:
    """The largest image's cost for the model in folder; None for a text model, or one whose processor will not load."""
    from backend.models.vision import config_of

    vision = config_of(folder).get("vision_config")
    if not isinstance(vision, dict):
        return None
    try:
        return _cost(str(folder), max_pixels or 0)
    except TuneForgeError:
        return None


@lru_cache(maxsize=8)
def _cost(folder: str, max_pixels: int) -> ImageCost:
    from backend.models.vision import config_of, load_processor

    vision = config_of(folder)["vision_config"]
    processor = load_processor(folder)
    side = math.isqrt(max_pixels) if max_pixels else int(vision.get("image_size") or 768)
    counted = processor._get_num_multimodal_tokens(image_sizes=[(side, side)])
    tokens, patches = counted.num_image_tokens[0], counted.num_image_patches[0]
    hidden = int(vision.get("embed_dim") or vision.get("hidden_size") or 0)
    if "spatial_merge_size" in vision:  # any size: the processor counted the patches themselves
        positions = int(patches)
    else:  # a fixed square per tile; the processor counted tiles (0 or 1 when it does not split)
        per_tile = (int(vision.get("image_size") or 0) // int(vision.get("patch_size") or 1)) ** 2
        positions = max(1, int(patches)) * per_tile
    return ImageCost(
        tokens=int(tokens),
        positions=positions,
        hidden_size=hidden,
        intermediate_size=int(vision.get("intermediate_size") or hidden * int(vision.get("mlp_ratio") or 4)),
        layers=int(vision.get("depth") or vision.get("num_hidden_layers") or 0),
    )
