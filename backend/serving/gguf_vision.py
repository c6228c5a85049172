"""A vision-language model for llama.cpp: its language model as one GGUF, and its mmproj file beside it.

llama.cpp's `convert_hf_to_gguf.py` writes both from the merged folder: the language model (as for text,
once the config names the language model's own class, which transformers 5 leaves out of `text_config`)
and, with `--mmproj`, the image encoder and projector as a multimodal projector file (f16). llama-server
reads the two together (`--mmproj`) and takes images in OpenAI chat messages. Built and checked here for
Idefics3 (SmolVLM's layout, vision-demo's): the language model's GGUF is checked as any text GGUF
(greedy tokens against transformers, perplexity), and the pair is loaded by llama-server, which must turn
an image into prompt tokens and answer. Its answer to the image is not compared with transformers':
llama.cpp resizes and tiles images its own way. Other architectures are refused in one line.
"""

from __future__ import annotations

import base64
import io
import json
import tempfile
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError
from backend.serving import llamacpp
from backend.serving.gguf_export import converter_view

# The architectures whose language model and mmproj llama.cpp's converter writes and llama-server loads here.
VISION_GGUF = {"Idefics3ForConditionalGeneration": "Idefics3 (SmolVLM, vision-demo)"}
MMPROJ_TYPE = "f16"
PROBE_QUESTION = "What colour is this picture?"


def check_vision_gguf(config: dict[str, Any]) -> str:
    """The model's architecture when its GGUF and mmproj are built here, or a one-line refusal naming it."""
    name = (config.get("architectures") or [config.get("model_type", "?")])[0]
    if name not in VISION_GGUF:
        raise TuneForgeError(
            f"GGUF export of a {name} vision-language model is not built yet (only {', '.join(VISION_GGUF.values())}); "
            "export it as merged or adapter, which load in transformers with their processor"
        )
    return name


def mmproj_name(run_id: str) -> str:
    return f"mmproj-{run_id}-{MMPROJ_TYPE}.gguf"


def write_mmproj(model_dir: Path, out: Path, facts: dict[str, str]) -> Path:
    """The merged model's image encoder and projector as llama.cpp's mmproj file."""
    with tempfile.TemporaryDirectory(dir=out.parent) as tmp:
        view = converter_view(model_dir, Path(tmp) / "model")
        metadata = Path(tmp) / "metadata.json"
        metadata.write_text(json.dumps({f"general.{k}": str(v) for k, v in facts.items()}), encoding="utf-8")
        return llamacpp.convert_model(view, out, MMPROJ_TYPE, metadata, mmproj=True)


def verify_mmproj(gguf_file: Path, mmproj: Path) -> dict[str, Any]:
    """llama-server with the model and its mmproj: the prompt tokens an image adds to a chat, and its reply."""
    from PIL import Image

    picture = io.BytesIO()
    Image.new("RGB", (96, 64), (200, 40, 40)).save(picture, "PNG")
    url = "data:image/png;base64," + base64.b64encode(picture.getvalue()).decode()
    question = {"type": "text", "text": PROBE_QUESTION}
    with llamacpp.LlamaServer(gguf_file, ctx=2048, mmproj=mmproj) as server:
        prompts = []
        for content in ([{"type": "image_url", "image_url": {"url": url}}, question], [question]):
            body = {"messages": [{"role": "user", "content": content}], "max_tokens": 4, "temperature": 0.0}
            answer = server.post("/v1/chat/completions", body)
            prompts.append(answer["usage"]["prompt_tokens"])
    image_tokens = prompts[0] - prompts[1]
    if image_tokens <= 0:
        raise TuneForgeError(f"the mmproj file was not kept: llama-server read no image tokens from {mmproj.name}")
    return {"file": mmproj.name, "type": MMPROJ_TYPE, "image_tokens": image_tokens, "size_bytes": mmproj.stat().st_size}


def vision_card_lines(name: str, mmproj: dict[str, Any]) -> list[str]:
    """How to run the pair, and what was checked of the mmproj file."""
    return [
        "## Images",
        "",
        f"The image encoder and projector are in `{mmproj['file']}` (llama.cpp's mmproj file, {mmproj['type']}); "
        f"the language model alone is in `{name}`.",
        f"- llama.cpp: `llama-server -m {name} --mmproj {mmproj['file']}`, then send OpenAI chat messages with "
        f'`{{"type": "image_url", ...}}` parts; or `llama-mtmd-cli -m {name} --mmproj {mmproj["file"]} --image '
        'photo.png -p "..."`.',
        "- Ollama: the Modelfile runs the language model alone (text only).",
        "",
        f"Checked in llama-server with both files: a {PROBE_QUESTION!r} chat with a 96×64 picture took "
        f"{mmproj['image_tokens']} more prompt tokens than without it, and the server answered. Its answers to "
        "images were not compared with transformers' (llama.cpp resizes and tiles images its own way), and "
        "llama-mtmd-cli was not run (this install does not build it).",
        "",
    ]
