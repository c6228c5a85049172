"""Supervised fine-tuning of a vision-language model on conversations with images (task sft)."""

from __future__ import annotations

from backend.data.images import first_image_example
from backend.data.vision_encoding import VisionCollator, encode_with_images
from backend.errors import TuneForgeError
from backend.models.sources import resolve_model
from backend.models.vision import (
    freeze_parts,
    image_token_id,
    is_vision_folder,
    load_processor,
    load_vision_model,
    lora_scope,
)
from backend.templates import IGNORE_INDEX, ensure_chat_template
from backend.training.recipe import Recipe


class VisionRecipe(Recipe):
    """SFT of an image-text model (Idefics3/SmolVLM, LLaVA, …): answers-only loss, images never trained on.

    Supports LoRA and full fine-tuning, with the image encoder and the projector frozen or trained
    (freeze_vision_tower, freeze_multi_modal_projector: LLaMA-Factory's names and defaults) and images
    scaled down to image_max_pixels. Rows without images train as text. Batches are padded, not packed:
    packing would move image tokens away from the positions their features are placed at.
    Refuses: a task other than sft, and method freeze (which counts the language model's layers only).
    """

    def setup(self) -> None:
        cfg = self.config
        if cfg.task != "sft" or cfg.method == "freeze":
            what = f"task {cfg.task}" if cfg.task != "sft" else "method freeze"
            raise TuneForgeError(f"vision-language models train with task sft, by lora, qlora or full; not {what}")
        splits = self.load_data()
        self.model_path = resolve_model(cfg.model, progress=lambda msg: self.events.emit("status", message=msg))
        self.processor = load_processor(self.model_path, cfg.trust_remote_code)
        ensure_chat_template(self.processor.tokenizer, cfg.template)
        self.tokenizer = self.processor.tokenizer
        self.train_set = self._encode(splits.train, "training")
        self.eval_set = self._encode(splits.validation, "validation") if splits.validation else []

        self.events.emit("status", message=f"loading model ({self.precision.describe()})")
        model = load_vision_model(
            self.model_path,
            dtype=self.precision.load_dtype(cfg.method),
            trust_remote_code=cfg.trust_remote_code,
            **self.precision.loading_arguments(),
        )
        model.config.use_cache = False
        if cfg.method == "full":
            freeze_parts(model, cfg.freeze_vision_tower, cfg.freeze_multi_modal_projector)
        self.model = self._adapt(model)
        self.report_size()

    def _lora_config(self):
        config = super()._lora_config()
        scope = lora_scope(self._base_model, self.config.freeze_vision_tower, self.config.freeze_multi_modal_projector)
        for key, value in scope.items():
            setattr(config, key, value)
        return config

    def _adapt(self, model):
        self._base_model = model
        return super()._adapt(model)

    def _encode(self, examples, split: str):
        cfg = self.config
        encoded = [encode_with_images(self.processor, e, cfg.cutoff_len, cfg.image_max_pixels) for e in examples]
        kept = [e for e in encoded if e and any(label != IGNORE_INDEX for label in e["labels"])]
        if not kept:
            raise TuneForgeError(
                f"no {split} example keeps its images and an answer within cutoff_len={cfg.cutoff_len} tokens; "
                "raise cutoff_len or lower image_max_pixels"
            )
        if len(kept) < len(encoded):
            print(f"{len(encoded) - len(kept)} {split} examples dropped: beyond cutoff_len", flush=True)
        images = sum(1 for e in examples for _ in e.get("images") or [])
        image_id = image_token_id(self.processor)
        image_tokens = sum(e["input_ids"].count(image_id) for e in kept)
        print(f"{split}: {len(kept)} examples, {images} images, {image_tokens} image tokens", flush=True)
        return kept

    def collator(self):
        return VisionCollator(self.processor)

    def save(self, metrics: dict) -> None:
        self.tokenizer = self.processor  # the processor saves the tokenizer, chat template and image settings
        super().save(metrics)


def refuse_images_for_text_model(examples: list[dict], model_path: str, model: str) -> None:
    """A text-only model cannot read a dataset's images: say where the first one is and what to pick instead."""
    found = first_image_example(examples)
    if found is None or is_vision_folder(model_path):
        return
    index, example = found
    raise TuneForgeError(
        f"training example {index + 1} has images ({example['images'][0]}), but model {model} reads text only; "
        "choose a vision-language model (model: vision-demo, or a Qwen2-VL, Qwen2.5-VL, Idefics3/SmolVLM, LLaVA or "
        "Gemma 3 folder)"
    )
