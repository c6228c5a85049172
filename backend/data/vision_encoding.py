"""Conversations with images as a vision-language model reads them: token ids with image tokens, labels, pixels.

The conversation is rendered with the chat template, each `<image>` placeholder becoming the marker the
processor expands (backend.models.vision.image_marker). The text is then cut at the answers' edges
(backend.templates.answer_spans): prompt pieces go through the processor, which expands each marker
into the image's tokens and makes its pixel tensors; answer pieces through the tokenizer. Labels keep
only the answer pieces, so no image token is ever trained, whatever the architecture calls it.
"""

from __future__ import annotations

from backend.data.images import IMAGE_PLACEHOLDER, open_image
from backend.errors import TuneForgeError
from backend.models.vision import image_marker, image_token_id
from backend.templates import IGNORE_INDEX, answer_spans, render

TOKEN_KEYS = ("input_ids", "attention_mask")
# Per-token marks of image tokens (Gemma 3's bidirectional attention over an image): recomputed over the whole row.
TYPE_KEYS = ("token_type_ids", "mm_token_type_ids")
# Processors that give pixel_values as (batch, images, channels, height, width): images are padded per row.
PER_ROW_IMAGES = ("Idefics3Processor", "SmolVLMProcessor")


def with_markers(messages: list[dict], marker: str) -> list[dict]:
    return [{**m, "content": m["content"].replace(IMAGE_PLACEHOLDER, marker)} for m in messages]


def encode_with_images(processor, example: dict, cutoff_len: int, max_pixels: int = 0) -> dict:
    """Token ids and labels (answers only), plus the pixel tensors of the example's images, in "pixels"."""
    marker = image_marker(processor)
    images = [open_image(p, max_pixels) for p in example.get("images") or []]
    placed = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in example["messages"])
    if placed != len(images):
        raise TuneForgeError(
            f"an example has {placed} {IMAGE_PLACEHOLDER} placeholders but {len(images)} images; give the rows "
            f"an images column, or write the placeholder otherwise in text-only rows"
        )
    text, spans = answer_spans(processor.tokenizer, with_markers(example["messages"], marker))
    encoded = {"labels": []}
    pixels: list[dict] = []
    marks: set[str] = set()
    used = 0
    for piece, trained in answer_pieces(text, spans):
        if not piece:
            continue
        count = piece.count(marker)
        part = _encode_piece(processor, piece, images[used : used + count])
        used += count
        if count:
            pixels.append({k: v for k, v in part.items() if k not in TOKEN_KEYS + TYPE_KEYS})
            marks.update(k for k in TYPE_KEYS if k in part)
        ids = part["input_ids"]
        for key in TOKEN_KEYS:
            if key in part:
                encoded.setdefault(key, []).extend(part[key])
        encoded["labels"].extend(ids if trained else [IGNORE_INDEX] * len(ids))
    image_id = image_token_id(processor)
    for key in marks:
        encoded[key] = [int(token == image_id) for token in encoded["input_ids"]]
    if len(encoded["input_ids"]) > cutoff_len:
        if image_id in encoded["input_ids"][cutoff_len:]:
            return {}  # the caller drops it: an image cut in half cannot be read
        encoded = {k: v[:cutoff_len] for k, v in encoded.items()}
    encoded["pixels"] = join_pixels(processor, pixels)
    return encoded


def answer_pieces(text: str, spans: list[tuple[int, int]]) -> list[tuple[str, bool]]:
    """The rendered text cut at the answers' edges: (piece, whether it is an answer)."""
    pieces, start = [], 0
    for begin, end in spans:
        pieces += [(text[start:begin], False), (text[begin:end], True)]
        start = end
    return pieces + [(text[start:], False)]


def _encode_piece(processor, piece: str, images: list) -> dict:
    if not images:
        ids = processor.tokenizer(piece, add_special_tokens=False)["input_ids"]
        return {"input_ids": ids, "attention_mask": [1] * len(ids)}
    part = processor(text=[piece], images=[images], add_special_tokens=False, return_tensors="pt")
    return {k: (v[0].tolist() if k in TOKEN_KEYS + TYPE_KEYS else v) for k, v in part.items()}


def join_pixels(processor, parts: list[dict]) -> dict:
    """One example's pixel tensors from its pieces: per-row image stacks joined on the image axis, others on rows."""
    import torch

    if not parts:
        return {}
    per_row = type(processor).__name__ in PER_ROW_IMAGES
    return {key: torch.cat([p[key] for p in parts], dim=1 if per_row else 0) for key in parts[0]}


class VisionCollator:
    """Padded batches (right side) with their images: packed rows would break image positions (Qwen2-VL's mrope)."""

    def __init__(self, processor):
        self.pad_id = processor.tokenizer.pad_token_id
        if self.pad_id is None:
            self.pad_id = processor.tokenizer.eos_token_id
        self.per_row = type(processor).__name__ in PER_ROW_IMAGES

    def __call__(self, examples: list[dict]) -> dict:
        import torch

        width = max(len(e["input_ids"]) for e in examples)
        fill = {"input_ids": self.pad_id, "labels": IGNORE_INDEX}
        batch = {}
        for key in ("input_ids", "labels", *TOKEN_KEYS[1:], *TYPE_KEYS):
            if key in examples[0]:
                rows = [e[key] + [fill.get(key, 0)] * (width - len(e[key])) for e in examples]
                batch[key] = torch.tensor(rows, dtype=torch.long)
        with_pixels = [e["pixels"] for e in examples if e.get("pixels")]
        if with_pixels:
            batch.update(self._pixels(examples, with_pixels))
        return batch

    def _pixels(self, examples: list[dict], with_pixels: list[dict]) -> dict:
        import torch

        if not self.per_row:
            return {key: torch.cat([p[key] for p in with_pixels]) for key in with_pixels[0]}
        # Idefics3: rows without images (or with fewer) get all-zero images, which the model drops.
        most = max(p["pixel_values"].shape[1] for p in with_pixels)
        joined = {}
        for key, sample in with_pixels[0].items():
            rows = []
            for example in examples:
                tensor = example["pixels"][key] if example.get("pixels") else sample[:, :0]
                pad = [0] * (2 * (tensor.dim() - 2)) + [0, most - tensor.shape[1]]
                rows.append(torch.nn.functional.pad(tensor, pad))
            joined[key] = torch.cat(rows)
        return joined


def prompt_inputs(processor, messages: list[dict], images: list, max_pixels: int = 0) -> dict:
    """The model inputs for a chat reply: the conversation so far with its images, ready for generate()."""
    marker = image_marker(processor)
    placed = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if placed != len(images):
        raise TuneForgeError(f"{placed} {IMAGE_PLACEHOLDER} placeholders but {len(images)} images in the chat")
    text = render(processor.tokenizer, with_markers(messages, marker), add_generation_prompt=True)
    opened = [open_image(p, max_pixels) for p in images]
    if not opened:
        return dict(processor.tokenizer(text, add_special_tokens=False, return_tensors="pt"))
    return dict(processor(text=[text], images=[opened], add_special_tokens=False, return_tensors="pt"))
