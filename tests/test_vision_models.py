"""Vision-language models, one tiny random model per architecture: train through the job's main(), chat with an
image, export merged and adapter folders that plain transformers loads with their processor.

What is checked is the plumbing (labels, frozen parts, images reaching the model), not what a run learns.
"""

import json
from pathlib import Path

import pytest
import torch
from peft import PeftModel
from safetensors import safe_open
from transformers import AutoImageProcessor, AutoModelForImageTextToText, AutoProcessor, AutoTokenizer

from backend.access.confine import Confinement
from backend.data import DataOptions, load_splits
from backend.data.vision_encoding import encode_with_images, prompt_inputs
from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator
from backend.models.image_only_processors import IMAGE_ONLY, processor_class_of
from backend.models.vision import freeze_parts, image_token_id, load_processor, load_vision_model
from backend.models.vision_build import ARCHITECTURES
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from backend.templates import IGNORE_INDEX
from tests.helpers import train_in_process


@pytest.fixture(scope="module", params=ARCHITECTURES)
def trained(request, tmp_path_factory, tiny_vision_model_of, shapes_dataset):
    model = tiny_vision_model_of(request.param)
    workspace = tmp_path_factory.mktemp("vision") / "workspace"
    jobs = JobManager(workspace, Confinement(workspace, allowed=[shapes_dataset.parent]))
    options = {"model": str(model), "dataset": str(shapes_dataset), "max_steps": 1, "val_size": 0}
    options.update(per_device_train_batch_size=2, freeze_multi_modal_projector=False, learning_rate=1e-2)
    run_id = train_in_process(jobs, options)
    yield jobs, run_id, model
    jobs.shutdown()


def test_answers_only_labels_never_train_image_tokens(trained, shapes_dataset):
    jobs, run_id, model = trained
    processor = load_processor(model)
    (example, *_) = load_splits(DataOptions(dataset=str(shapes_dataset))).train
    encoded = encode_with_images(processor, example, 512)
    image_id = image_token_id(processor)
    images = [i for i, token in enumerate(encoded["input_ids"]) if token == image_id]
    trained_text = processor.tokenizer.decode([t for t in encoded["labels"] if t != IGNORE_INDEX])
    assert images and all(encoded["labels"][i] == IGNORE_INDEX for i in images)
    assert trained_text.startswith("It is red.")
    assert encoded["pixels"]["pixel_values"].abs().sum() > 0


def test_frozen_tower_and_trained_projector_as_configured(trained):
    jobs, run_id, model = trained
    with safe_open(str(jobs.run_dir(run_id) / "adapter_model.safetensors"), "pt") as saved:
        names = list(saved.keys())
    projector = ("connector", "multi_modal_projector", "merger")  # Qwen2-VL's merger sits inside its tower
    assert any(any(p in n for p in projector) for n in names)  # trained whole
    towers = ("vision_model", "vision_tower", "visual")
    assert not any(any(t in n for t in towers) and "merger" not in n for n in names)  # frozen: no adapter there
    full = load_vision_model(model)
    freeze_parts(full, freeze_tower=True, freeze_projector=True)
    trainable = {n.split(".")[1] for n, p in full.named_parameters() if p.requires_grad}
    assert trainable and not trainable & {*towers, *projector}


def test_chat_with_an_image_then_export_loads_in_plain_transformers(trained, shapes_dataset, tiny_model):
    jobs, run_id, model = trained
    image = str(shapes_dataset.parent / "images" / "0.png")
    chat = ChatEngine(jobs)
    settings = {"temperature": 0.0, "max_new_tokens": 6}
    reply = chat.reply(run_id, "What colour is this?", images=[image], **settings)
    assert isinstance(reply, str)
    assert isinstance(chat.reply(f"base:{model}", "Hello", images=[image], **settings), str)
    with pytest.raises(TuneForgeError, match="reads text only; for images pick a vision-language model"):
        chat.reply(f"base:{tiny_model}", "What colour?", images=[image], **settings)
    with pytest.raises(TuneForgeError, match="outside"):
        chat.reply(run_id, "What colour?", images=["/etc/hostname"], **settings)
    compared = Evaluator(jobs, chat).compare_with_base(run_id, str(shapes_dataset), max_rows=2, max_new_tokens=4)
    metrics = {row["metric"]: row for row in compared["comparison"]}
    assert metrics["eval_loss"]["tuned"] < metrics["eval_loss"]["base"]  # a 1e-2 step on these very answers
    assert {"rouge1", "exact_match"} <= set(metrics) and len(compared["rows"]) == 2

    exporter = Exporter(jobs)
    merged = exporter.export(run_id, "merged")
    adapter = exporter.export(run_id, "adapter")
    messages = [{"role": "user", "content": "<image>What colour is this?"}]
    logits = []
    for loaded, processor in (
        (AutoModelForImageTextToText.from_pretrained(merged), plain_processor(merged)),
        (PeftModel.from_pretrained(AutoModelForImageTextToText.from_pretrained(model), adapter),
         plain_processor(adapter)),
    ):  # fmt: skip
        with torch.no_grad():
            logits.append(loaded(**prompt_inputs(processor, messages, [image])).logits[0, -1])
    assert torch.allclose(logits[0], logits[1], atol=1e-4)  # the merge is the adapter folded in


@pytest.mark.slow
def test_gguf_export_writes_the_language_model_and_its_mmproj_which_llama_server_reads(trained):
    """Idefics3 (vision-demo's layout): llama.cpp's converter writes both files, llama-server reads the pair;
    the others are refused in one line. Slow: two conversions, two llama-server loads and a perplexity
    (about 30 s on the loaded 2-core CPU)."""
    import gguf

    from backend.models.vision import config_of
    from backend.serving.gguf_vision import VISION_GGUF

    jobs, run_id, model = trained
    exporter = Exporter(jobs)
    architecture = config_of(model)["architectures"][0]
    with pytest.raises(TuneForgeError, match="a GGUF LoRA of a vision-language model is not built"):
        exporter.export(run_id, "gguf_adapter")
    if architecture not in VISION_GGUF:
        with pytest.raises(TuneForgeError, match=f"GGUF export of a {architecture} vision-language model is not"):
            exporter.export(run_id, "gguf")
        return
    folder = exporter.export_gguf(run_id, "f16")
    check = json.loads((folder / "verification.json").read_text())
    assert check["passed"] and check["tokens_match"] and check["agree"] == check["tokens"] > 0, check
    projector = gguf.GGUFReader(str(folder / check["mmproj"]["file"]))
    assert projector.fields["clip.projector_type"].contents() == "idefics3"
    assert check["mmproj"]["image_tokens"] > 0  # llama-server turned the probe's picture into prompt tokens
    assert f"--mmproj {check['mmproj']['file']}" in (folder / "README.md").read_text()
    assert f"# llama-server -m {check['file']} --mmproj" in (folder / "Modelfile").read_text()


def plain_processor(folder):
    """The export's processor as plain transformers loads it. Qwen2-VL's processor class also wants a video
    processor, which needs torchvision (not installed here, so no transformers call builds the processor
    whole): its parts load in plain transformers and equal ours, and the folder names the real class and
    keeps the video settings an install with torchvision reads."""
    if processor_class_of(folder) not in IMAGE_ONLY:
        return AutoProcessor.from_pretrained(folder)
    saved = json.loads((Path(folder) / "processor_config.json").read_text())
    assert saved["video_processor"]["video_processor_type"] == IMAGE_ONLY[saved["processor_class"]]
    with pytest.raises(ImportError, match="(?i)torchvision"):
        AutoProcessor.from_pretrained(folder)
    ours = load_processor(folder)
    assert type(ours).__name__ == saved["processor_class"]
    assert AutoImageProcessor.from_pretrained(folder).to_dict() == ours.image_processor.to_dict()
    assert AutoTokenizer.from_pretrained(folder).get_vocab() == ours.tokenizer.get_vocab()
    return ours


def test_a_model_whose_processor_needs_torchvision_is_refused_in_one_line(tmp_path, default_model_dir):
    """LLaVA-OneVision's processor takes a video processor, which needs torchvision: left out of this install."""
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    AutoTokenizer.from_pretrained(default_model_dir).save_pretrained(tmp_path)
    Qwen2VLImageProcessorPil().save_pretrained(tmp_path)
    (tmp_path / "processor_config.json").write_text(json.dumps({"processor_class": "LlavaOnevisionProcessor"}))
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "llava_onevision", "vision_config": {}}))
    with pytest.raises(TuneForgeError, match=r"its processor needs torchvision, which this install leaves out") as no:
        load_processor(tmp_path)
    assert "\n" not in str(no.value)


def test_token_count_has_image_tokens_and_a_text_model_is_refused(tiny_vision_model_of, shapes_dataset, tiny_model):
    from backend.data.tokens import token_stats

    examples = load_splits(DataOptions(dataset=str(shapes_dataset))).train
    model = str(tiny_vision_model_of("idefics3"))
    stats = token_stats(examples, model, "chatml", 512, len(examples))
    text_only = [{"messages": e["messages"]} for e in examples]
    plain = token_stats(text_only, model, "chatml", 512, len(examples))
    processor = load_processor(model)
    per_image = processor.image_seq_len + 2  # the image tokens between two <fake_token_around_image>, plus <global-img>
    assert [a - b for a, b in zip(stats.lengths, plain.lengths, strict=True)] == [per_image] * len(examples)
    with pytest.raises(TuneForgeError, match=r"row 1 has images, but model .* reads text only"):
        token_stats(examples, tiny_model, "chatml", 512, len(examples))


@pytest.mark.slow
def test_qlora_trains_a_vision_model_on_a_4bit_base_and_chats_with_it_as_trained(
    tmp_path, tiny_vision_model_of, shapes_dataset
):
    """QLoRA on a vision model: its language model loads in 4 bits, and its projector trains whole beside the
    adapters. Slow: a 4-bit load and one step, then a 4-bit load for chat (13 s on the loaded 2-core CPU)."""
    from backend.capability import probe
    from backend.events import read_events

    hardware = probe()
    if not hardware["cuda"] and not hardware["bitsandbytes_cpu"]:
        pytest.skip("bitsandbytes has no CPU backend here (pip install -U bitsandbytes)")
    model = tiny_vision_model_of("idefics3")
    jobs = JobManager(tmp_path / "workspace", Confinement(tmp_path / "workspace", allowed=[shapes_dataset.parent]))
    options = {"model": str(model), "dataset": str(shapes_dataset), "method": "qlora", "max_steps": 1, "val_size": 0}
    run_id = train_in_process(jobs, {**options, "learning_rate": 1e-2, "freeze_multi_modal_projector": False})
    statuses = [e["message"] for e in read_events(jobs.run_dir(run_id)) if e["type"] == "status"]
    assert any(s.startswith("loading model (") and s.endswith(", 4-bit base)") for s in statuses), statuses
    chat = ChatEngine(jobs)
    image = str(shapes_dataset.parent / "images" / "0.png")
    reply = chat.reply(run_id, "What colour is this?", images=[image], temperature=0.0, max_new_tokens=4)
    with chat.model_for(run_id) as (loaded, _):
        four_bit = [name for name, m in loaded.named_modules() if type(m).__name__ == "Linear4bit"]
    assert four_bit and all(".text_model." in name for name in four_bit)  # as it trained: the encoder, projector
    assert isinstance(reply, str)  # and head in full precision, so the projector trained whole
    with safe_open(str(jobs.run_dir(run_id) / "adapter_model.safetensors"), "pt") as saved:
        assert any("connector" in name for name in saved.keys())
    jobs.shutdown()


def test_a_qwen2_vl_folder_in_the_hubs_older_layout_loads_its_processor(tmp_path, default_model_dir):
    """Qwen2-VL as its hub repositories have it: the image processor in preprocessor_config.json naming the
    processor class, no processor_config.json; saved again, it keeps the class name and video settings."""
    import json

    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    AutoTokenizer.from_pretrained(default_model_dir).save_pretrained(tmp_path)
    Qwen2VLImageProcessorPil(patch_size=14).save_pretrained(tmp_path)
    saved = json.loads((tmp_path / "preprocessor_config.json").read_text())
    (tmp_path / "preprocessor_config.json").write_text(json.dumps({**saved, "processor_class": "Qwen2VLProcessor"}))
    processor = load_processor(tmp_path)
    assert type(processor).__name__ == "Qwen2VLProcessor" and processor.image_processor.patch_size == 14
    processor.save_pretrained(tmp_path / "again")
    again = json.loads((tmp_path / "again" / "processor_config.json").read_text())
    assert again["processor_class"] == "Qwen2VLProcessor"
    assert again["video_processor"] == {**again["video_processor"], "video_processor_type": "Qwen2VLVideoProcessor",
                                        "patch_size": 14}  # fmt: skip
