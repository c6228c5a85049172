"""Images in conversations: LLaMA-Factory's `images` column with `<image>` placeholders, and OpenAI's content parts.

A row's images are files named relative to the data file (LLaMA-Factory reads them relative to its
dataset_dir, which holds the file). Each is checked when the row is read: it exists, stays inside the
data file's folder, and opens as an image; the number of `<image>` placeholders in the turns must equal
the number of images. An example with images is {"messages": [...], "images": [absolute paths]}.
Pillow only: no torch, so inspection and the app's edge can use it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from backend.data.readers import RowError

IMAGE_PLACEHOLDER = "<image>"  # LLaMA-Factory's placeholder, where each image sits in a turn
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
TURN_KEYS = ("messages", "conversations")


def lift_content_parts(record: dict[str, Any]) -> dict[str, Any]:
    """A row whose turns hold OpenAI content parts, as text with `<image>` placeholders and an `images` list.

    Accepts {"type": "text", "text"}, {"type": "image", "path" | "image"} and {"type": "image_url",
    "image_url": {"url"} | "url"}; a row whose turns are all text is returned as it is.
    """
    key = next((k for k in TURN_KEYS if isinstance(record.get(k), list)), None)
    if key is None or not any(isinstance(t, dict) and isinstance(t.get("content"), list) for t in record[key]):
        return record
    images = list(record.get("images") or [])
    turns = []
    for i, turn in enumerate(record[key], start=1):
        if isinstance(turn, dict) and isinstance(turn.get("content"), list):
            turn = {**turn, "content": "".join(_part_text(part, i, images) for part in turn["content"])}
        turns.append(turn)
    return {**record, key: turns, "images": images}


def _part_text(part: Any, turn: int, images: list) -> str:
    kind = part.get("type", "text") if isinstance(part, dict) else None
    if kind == "text" and isinstance(part.get("text", ""), str):
        return part.get("text", "")
    if kind in ("image", "image_url"):
        source = part.get("path") or part.get("image") or part.get("url") or part.get("image_url")
        if isinstance(source, dict):
            source = source.get("url")
        if not isinstance(source, str) or not source.strip():
            raise RowError(f"turn {turn}: an {kind} part names no file (give 'path', or image_url.url)")
        images.append(source.strip())
        return IMAGE_PLACEHOLDER
    raise RowError(f"turn {turn}: a content part must be text, image or image_url, got {str(part)[:60]}")


def attach_images(example: dict[str, Any], record: dict[str, Any], folder: Path | None) -> dict[str, Any]:
    """The example with its row's images checked and resolved; refuses (RowError) in one line what cannot train.

    A row without an `images` column is text: an `<image>` in it stays words (HTML, say), as before images.
    """
    if "images" not in record:
        return example
    names = record.get("images")
    if isinstance(names, str):  # a CSV cell: one path, or a JSON list of them
        names = _cell_paths(names)
    names = [] if names is None else names
    if not isinstance(names, list) or not all(isinstance(n, str) and n.strip() for n in names):
        raise RowError("'images' must be a list of image file paths")
    messages = example.get("messages") or []
    if any(m["role"] == "assistant" and IMAGE_PLACEHOLDER in m["content"] for m in messages):
        raise RowError(f"an answer holds {IMAGE_PLACEHOLDER}; images belong in the user's turns")
    placed = sum(m["content"].count(IMAGE_PLACEHOLDER) for m in messages)
    if placed != len(names):
        raise RowError(
            f"{placed} {IMAGE_PLACEHOLDER} placeholder{'s' * (placed != 1)} but {len(names)} "
            f"image{'s' * (len(names) != 1)}; put one {IMAGE_PLACEHOLDER} in a turn for each image"
        )
    if not names:
        return example
    if folder is None:
        raise RowError("images are read only from a local data file's folder, not from a hub dataset")
    return {**example, "images": [str(check_image(name, folder)) for name in names]}


def _cell_paths(cell: str) -> list:
    import json

    if cell.lstrip().startswith("["):
        try:
            return json.loads(cell)
        except ValueError:
            raise RowError("'images' holds a list that does not parse as JSON") from None
    return [cell] if cell.strip() else []


def check_image(name: str, folder: Path) -> Path:
    """The image file a row names, resolved inside the data file's folder and opened once to prove it is one."""
    from PIL import Image, UnidentifiedImageError

    if "://" in name or name.startswith("data:"):
        raise RowError(f"image {name[:60]}: only image files beside the data are read (no URLs: training is offline)")
    root = folder.resolve()
    path = (root / name).resolve()
    if not path.is_relative_to(root):
        raise RowError(f"image {name}: outside the data file's folder {root}; keep images beside the data")
    if not path.is_file():
        raise RowError(f"image {name}: file not found in {root}")
    try:
        with Image.open(path) as image:
            image.verify()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise RowError(f"image {name}: not a readable image ({str(exc).splitlines()[0][:80] or 'damaged'})") from None
    return path


def open_image(path: str | Path, max_pixels: int = 0):
    """The image as RGB, scaled down (aspect kept) to at most max_pixels, as LLaMA-Factory's image_max_pixels does."""
    from PIL import Image

    with Image.open(path) as image:
        image = image.convert("RGB")
    if max_pixels and image.width * image.height > max_pixels:
        scale = (max_pixels / (image.width * image.height)) ** 0.5
        image = image.resize((max(1, int(image.width * scale)), max(1, int(image.height * scale))))
    return image


def first_image_example(examples: list[dict[str, Any]]) -> tuple[int, dict[str, Any]] | None:
    """(index, example) of the first example with images, for a refusal that says where."""
    return next(((i, e) for i, e in enumerate(examples) if e.get("images")), None)


def thumbnails(examples: list[dict[str, Any]], size: int = 96, most: int = 12) -> list[tuple[Any, int, int, int]]:
    """(small RGB image, row, its place among the row's images, the row's image count) for a dataset preview."""
    found = []
    for row, example in enumerate(examples, start=1):
        paths = example.get("images") or []
        for place, path in enumerate(paths, start=1):
            if len(found) == most:
                return found
            image = open_image(path)
            image.thumbnail((size, size))
            found.append((image, row, place, len(paths)))
    return found
