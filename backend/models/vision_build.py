"""Vision-language models built here from a language model and a small vision tower, nothing downloaded.

Two uses: the studio's own `vision-demo` (the embedded SmolLM2 with its trained weights, and a small
randomly initialised SigLIP tower in SmolVLM's Idefics3 layout), and the tests' tiny random models of
each architecture (a few layers, the same tokenizer). The tokenizer is the language model's, with the
architecture's image tokens added; the processor is built around it with a PIL image processor.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

# Part of the cached models' folder names: a change to what is built builds them anew, beside the old.
BUILD = "v2"  # v2: Idefics3's vocabulary holds <end_of_utterance>
ARCHITECTURES = ("idefics3", "llava", "gemma3", "qwen2_vl", "qwen2_5_vl")
IMAGE_SIZE = 64  # pixels a side the tiny towers read; 16-pixel patches, so 16 patches an image
PATCH = 16
TINY_TEXT = dict(
    hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2
)
TINY_VISION = dict(hidden_size=32, intermediate_size=64, num_hidden_layers=1, num_attention_heads=2)
DEMO_VISION = dict(hidden_size=128, intermediate_size=256, num_hidden_layers=2, num_attention_heads=4)
QWEN_TOKENS = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
IMAGE_TOKENS = {
    # Idefics3's processor adds <end_of_utterance> to the tokenizer itself: added here first, the model's
    # vocabulary holds it (built after the processor, the saved tokenizer had an id past the embedding).
    "idefics3": ["<fake_token_around_image>", "<image>", "<global-img>", "<end_of_utterance>"],
    "llava": ["<image>"],
    "gemma3": ["<start_of_image>", "<end_of_image>", "<image_soft_token>"],
    "qwen2_vl": QWEN_TOKENS,
    "qwen2_5_vl": QWEN_TOKENS,
}
# Gemma 3's processor finds its image tokens by name on the tokenizer.
GEMMA3_TOKENS = {"boi_token": "<start_of_image>", "eoi_token": "<end_of_image>", "image_token": "<image_soft_token>"}
NAMED_TOKENS = {"gemma3": GEMMA3_TOKENS}


def build_vision_model(target: Path, architecture: str, text_dir: Path, text_shape: dict | None, seed: int = 0):
    """A vision-language model of `architecture` saved with its processor into target (atomically).

    text_shape None keeps the language model's own weights and sizes (vision-demo); a shape builds a
    random language model of that size (the tests' tiny models). The vision tower is random either way.
    """
    import torch
    import transformers

    named = NAMED_TOKENS.get(architecture)
    tokenizer = transformers.AutoTokenizer.from_pretrained(
        text_dir, **({"extra_special_tokens": named} if named else {})
    )
    tokenizer.add_special_tokens({"additional_special_tokens": IMAGE_TOKENS[architecture]})
    language = transformers.AutoConfig.from_pretrained(text_dir)
    text = (
        language.to_dict()
        if text_shape is None
        else {"model_type": TEXT_TYPES.get(architecture, language.model_type), **text_shape}
    )
    text.update(vocab_size=len(tokenizer), tie_word_embeddings=True)
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):
        text[key] = getattr(tokenizer, key)
    torch.manual_seed(seed)
    vision = TINY_VISION if text_shape is not None else DEMO_VISION
    model, processor = BUILDERS[architecture](transformers, tokenizer, text, vision)
    if len(processor.tokenizer) > text["vocab_size"]:  # a processor that added tokens of its own
        raise RuntimeError(f"{architecture}: the processor added tokens past the model's vocabulary")
    if text_shape is None:
        _copy_language_model(model, transformers.AutoModelForCausalLM.from_pretrained(text_dir))
    _save(target, model, processor)


def _idefics3(transformers, tokenizer, text: dict, vision: dict):
    from transformers.models.idefics3.image_processing_pil_idefics3 import Idefics3ImageProcessorPil

    image_seq_len = (IMAGE_SIZE // PATCH) ** 2 // 4  # the connector's pixel shuffle (scale_factor 2) merges 2x2
    config = transformers.Idefics3Config(
        text_config=text,
        vision_config=dict(vision, image_size=IMAGE_SIZE, patch_size=PATCH),
        scale_factor=2,
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        tie_word_embeddings=True,
    )
    images = Idefics3ImageProcessorPil(
        do_image_splitting=False, size={"longest_edge": IMAGE_SIZE}, max_image_size={"longest_edge": IMAGE_SIZE}
    )
    processor = transformers.Idefics3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_len=image_seq_len, chat_template=tokenizer.chat_template
    )
    return transformers.Idefics3ForConditionalGeneration(config), processor


def _llava(transformers, tokenizer, text: dict, vision: dict):
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    config = transformers.LlavaConfig(
        text_config=text,
        vision_config=dict(vision, model_type="clip_vision_model", image_size=IMAGE_SIZE, patch_size=PATCH),
        image_token_id=tokenizer.convert_tokens_to_ids("<image>"),
        vision_feature_layer=-1,
        vision_feature_select_strategy="default",
        tie_word_embeddings=True,
    )
    square = {"height": IMAGE_SIZE, "width": IMAGE_SIZE}
    images = CLIPImageProcessorPil(size={"shortest_edge": IMAGE_SIZE}, crop_size=square)
    processor = transformers.LlavaProcessor(
        image_processor=images,
        tokenizer=tokenizer,
        patch_size=PATCH,
        vision_feature_select_strategy="default",
        num_additional_image_tokens=1,  # CLIP's class token, which the "default" strategy drops
        chat_template=tokenizer.chat_template,
    )
    return transformers.LlavaForConditionalGeneration(config), processor


def _gemma3(transformers, tokenizer, text: dict, vision: dict):
    from transformers.models.gemma3.image_processing_pil_gemma3 import Gemma3ImageProcessorPil

    ids = {f"{name}_index": tokenizer.convert_tokens_to_ids(token) for name, token in GEMMA3_TOKENS.items()}
    config = transformers.Gemma3Config(
        text_config=dict(text, head_dim=16),
        vision_config=dict(vision, model_type="siglip_vision_model", image_size=IMAGE_SIZE, patch_size=PATCH),
        mm_tokens_per_image=4,  # pooled from the 4x4 patches, 2x2 a token
        **ids,
    )
    images = Gemma3ImageProcessorPil(size={"height": IMAGE_SIZE, "width": IMAGE_SIZE}, do_pan_and_scan=False)
    processor = transformers.Gemma3Processor(
        image_processor=images, tokenizer=tokenizer, image_seq_length=4, chat_template=tokenizer.chat_template
    )
    return transformers.Gemma3ForConditionalGeneration(config), processor


def _qwen2_vl(transformers, tokenizer, text: dict, vision: dict, version: str = "qwen2_vl"):
    """Qwen2-VL or Qwen2.5-VL: images at their own size (multiples of 32 pixels up to 64x64), 2x2 patches a token."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    from backend.models.image_only_processors import image_only

    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(f"<|{name}_pad|>") for name in ("image", "video")}
    ids.update(
        {f"vision_{edge}_token_id": tokenizer.convert_tokens_to_ids(f"<|vision_{edge}|>") for edge in ("start", "end")}
    )
    heads = text["hidden_size"] // text["num_attention_heads"]
    text = dict(
        text, rope_parameters={"rope_type": "default", "mrope_section": [heads // 8, heads * 3 // 16, heads * 3 // 16]}
    )
    tower = dict(depth=vision["num_hidden_layers"], num_heads=vision["num_attention_heads"], patch_size=PATCH)
    if version == "qwen2_vl":
        tower.update(embed_dim=vision["hidden_size"], hidden_size=text["hidden_size"], mlp_ratio=2)
        config, model, processor = (
            transformers.Qwen2VLConfig,
            transformers.Qwen2VLForConditionalGeneration,
            transformers.Qwen2VLProcessor,
        )
    else:
        tower.update(hidden_size=vision["hidden_size"], intermediate_size=vision["intermediate_size"],
                     out_hidden_size=text["hidden_size"], window_size=2 * PATCH, fullatt_block_indexes=[0])  # fmt: skip
        config = transformers.Qwen2_5_VLConfig
        model, processor = transformers.Qwen2_5_VLForConditionalGeneration, transformers.Qwen2_5_VLProcessor
    images = Qwen2VLImageProcessorPil(
        patch_size=PATCH, merge_size=2, size={"shortest_edge": 32 * 32, "longest_edge": IMAGE_SIZE**2}
    )
    built = config(text_config=text, vision_config=tower, tie_word_embeddings=True, **ids)
    return model(built), image_only(processor, images, tokenizer, chat_template=tokenizer.chat_template)


def _qwen2_5_vl(transformers, tokenizer, text: dict, vision: dict):
    return _qwen2_vl(transformers, tokenizer, text, vision, "qwen2_5_vl")


BUILDERS = {"idefics3": _idefics3, "llava": _llava, "gemma3": _gemma3, "qwen2_vl": _qwen2_vl, "qwen2_5_vl": _qwen2_5_vl}
# The tiny models' own language models, where the architecture has one (not SmolLM2's llama).
TEXT_TYPES = {"gemma3": "gemma3_text", "qwen2_vl": "qwen2_vl_text", "qwen2_5_vl": "qwen2_5_vl_text"}


def _copy_language_model(model, language) -> None:
    """The trained language model's weights into the new model's language part (its vocabulary grew by images')."""
    import torch

    target = model.get_decoder() if hasattr(model, "get_decoder") else model.model.text_model
    state = {k.removeprefix("model."): v for k, v in language.state_dict().items() if k.startswith("model.")}
    embed = state.pop("embed_tokens.weight")
    missing, unexpected = target.load_state_dict(state, strict=False)
    if unexpected or [m for m in missing if "embed_tokens" not in m]:
        raise RuntimeError(f"language model weights do not fit: missing {missing}, unexpected {unexpected}")
    with torch.no_grad():
        new = target.embed_tokens.weight
        new[: embed.shape[0]] = embed
        new[embed.shape[0] :] = embed.mean(dim=0)  # new image tokens start at the average word
    model.tie_weights()


def _save(target: Path, model, processor) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(staging)
    processor.save_pretrained(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another process finished first
        shutil.rmtree(staging, ignore_errors=True)


def vision_demo_dir(language_model_dir, progress=print) -> Path:
    """The vision-demo model, built on first use into the model cache from the embedded language model.

    language_model_dir: a callable giving the embedded model's folder (it converts that model on first use).
    """
    from backend.paths import model_cache_dir

    target = model_cache_dir() / f"vision-demo-{BUILD}"
    if not (target / "config.json").exists():
        progress(f"Building vision-demo in {target} (first use only): SmolLM2 with a small vision tower")
        build_vision_model(target, "idefics3", language_model_dir(progress), None)
    return target
