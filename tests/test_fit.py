"""Will it fit: the Model tab's sizes come from safetensors headers and agree with the loaded model and PEFT;
the estimate moves the way memory does; a run that needs more than is free is warned about, by how much."""

import json
import re

import pytest

from backend.capability import Precision, cpu_only
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.fit import estimate, fit_rows, model_report, stored_bytes, trainable_parameters
from backend.models.info import inspect_model, read_shape

# A CPU that runs every method, whatever this machine has installed: the arithmetic is the point here.
CPU = {**cpu_only(), "bitsandbytes": True, "bitsandbytes_cpu": True}


@pytest.fixture(scope="module")
def tiny_loaded(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(tiny_model_dir)


def trained_count(model) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def test_headers_give_the_loaded_models_parameter_count_and_architecture(tiny_model_dir, tiny_loaded):
    shape = inspect_model(str(tiny_model_dir))
    assert shape.parameters == sum(p.numel() for p in tiny_loaded.parameters())  # the tied head counted once
    assert (shape.model_type, shape.architecture) == ("llama", "LlamaForCausalLM")
    assert (shape.num_layers, shape.hidden_size, shape.vocab_size) == (2, 64, tiny_loaded.config.vocab_size)


@pytest.mark.parametrize("rank, target", [(8, "all"), (4, "q_proj,v_proj")])
def test_lora_trains_what_peft_counts(tiny_model_dir, tiny_loaded, rank, target):
    import copy

    from peft import LoraConfig, get_peft_model

    names = "all-linear" if target == "all" else target.split(",")
    peft_model = get_peft_model(copy.deepcopy(tiny_loaded), LoraConfig(r=rank, target_modules=names))
    config = TrainConfig.from_dict({"method": "lora", "lora_rank": rank, "lora_target": target})
    assert trainable_parameters(inspect_model(str(tiny_model_dir)), config) == trained_count(peft_model)


def test_freeze_trains_the_parameters_of_the_chosen_layers(tiny_model_dir, tiny_loaded):
    import copy

    from backend.training.freeze import train_only_layers

    for layers in (1, -1, 2):
        model = copy.deepcopy(tiny_loaded)
        train_only_layers(model, layers)
        config = TrainConfig.from_dict({"method": "freeze", "freeze_trainable_layers": layers})
        assert trainable_parameters(inspect_model(str(tiny_model_dir)), config) == trained_count(model)


def test_the_bytes_of_a_weight_are_the_dtype_the_job_loads():
    import torch

    for name in ("fp32", "bf16", "fp16"):
        for on_cpu in (True, False):
            for method in ("lora", "qlora", "full", "freeze"):
                precision = Precision(name, 0, on_cpu)
                assert stored_bytes(precision, method) == torch.finfo(precision.load_dtype(method)).bits // 8


def test_qlora_needs_less_than_lora_and_a_longer_batch_needs_more(default_model_dir):
    shape = inspect_model(str(default_model_dir))
    rows = fit_rows(shape, TrainConfig.from_dict({}), CPU)
    lora, qlora, full = rows["lora"], rows["qlora"], rows["full"]
    # As measured (docs/benchmarks.md): 522 MB of weights with the adapters for lora, 168 MB for qlora, whose
    # embedding stays fp32 (bitsandbytes' block scales, 2 MB, are not in get_memory_footprint's 168).
    assert lora.weights_mb == pytest.approx(522, abs=3) and qlora.weights_mb == pytest.approx(168, abs=3)
    assert qlora.total_mb < lora.total_mb
    # LoRA's adapters keep their inputs and outputs too: at 2,048 tokens a step they outweigh full's optimizer.
    assert full.gradients_mb + full.optimizer_mb < lora.activations_mb - full.activations_mb
    assert full.optimizer_mb == pytest.approx(2 * full.weights_mb)  # AdamW's two fp32 moments per weight
    longer = estimate(shape, TrainConfig.from_dict({"cutoff_len": 1024}), Precision("fp32", 0, True))
    assert longer.activations_mb == pytest.approx(2 * lora.activations_mb)
    assert longer.logits_mb == pytest.approx(2 * lora.logits_mb) and longer.weights_mb == lora.weights_mb


def test_a_quantized_base_peaks_while_loading_where_its_files_outweigh_training(tiny_model_dir):
    """Measured on a 1.5B model in bf16 files (docs/benchmarks.md): qlora peaked at 5.4 GB while loading, the
    mapped checkpoint beside the 4-bit model, against 4.0 GB while training; the estimate takes the larger."""
    import dataclasses

    from webui.fit_view import fit_markdown

    shape = inspect_model(str(tiny_model_dir))
    qlora_config = TrainConfig.from_dict({"method": "qlora"})
    nf4 = Precision("fp32", 4, True)
    small = estimate(shape, qlora_config, nf4)
    assert small.total_mb == small.training_mb > small.loading_mb  # a tiny file: training is the peak
    heavy = dataclasses.replace(shape, stored_bytes=shape.stored_bytes + 8 * 2**30)  # 8 GB more of files
    big = estimate(heavy, qlora_config, nf4)
    assert big.training_mb == pytest.approx(small.training_mb)  # the files are not held while training
    assert big.total_mb == big.loading_mb == pytest.approx(small.loading_mb + 8 * 1024)
    lora = estimate(heavy, TrainConfig.from_dict({}), Precision("fp32", 0, True))
    assert lora.loading_mb == 0 and lora.total_mb == lora.training_mb  # an unquantized load maps its tensors
    on_gpu = estimate(heavy, qlora_config, Precision("bf16", 4, False))
    assert on_gpu.total_mb == on_gpu.training_mb  # the GPU's memory holds no mapped files
    report = model_report({"model": str(tiny_model_dir)}, hardware=CPU, free_mb=100)
    assert "while loading" not in fit_markdown(report)  # the tiny model's total is its training peak
    qlora_row = next(row for row in report["fit"] if row["method"] == "qlora")
    qlora_row.update(loading_mb=big.loading_mb, total_mb=big.total_mb)  # the heavy files' row, as the tab gets it
    assert "(while loading: the checkpoint's files are read beside the quantized model)" in fit_markdown(report)


def test_a_run_that_needs_more_than_is_free_is_warned_about_by_how_much(tiny_model_dir):
    options = {"model": str(tiny_model_dir), "method": "full"}
    roomy = model_report(options, hardware=CPU, free_mb=1_000_000)
    assert roomy["warning"] == "" and all(row["fits"] for row in roomy["fit"])
    needed = roomy["run"]["total_mb"]
    tight = model_report(options, hardware=CPU, free_mb=needed - 300)
    assert tight["run"]["fits"] is False and "300 MB short" in tight["warning"]
    assert tight["warning"].startswith("⚠️ This run may not fit: full (fp32)")
    # It names the single settings that would fit, each checked against the same estimate.
    assert re.search(r"It fits with cutoff_len: 256 \(about [\d.]+ [MG]B\)", tight["warning"]), tight["warning"]
    hopeless = model_report(options, hardware=CPU, free_mb=10)
    assert hopeless["warning"].endswith(
        "No single change of method, gradient checkpointing, cutoff_len or batch size fits: pick a smaller model."
    )
    small_batch = model_report({**options, "per_device_train_batch_size": 8}, hardware=CPU, free_mb=needed)
    assert (
        "per_device_train_batch_size: " in small_batch["warning"]
        and "the same effective batch" in small_batch["warning"]
    )
    # A method this machine cannot run is named with the reason, not estimated.
    no_bnb = model_report(options, hardware={**CPU, "bitsandbytes": False}, free_mb=1_000_000)
    assert "bitsandbytes" in next(row for row in no_bnb["fit"] if row["method"] == "qlora")["unavailable"]


def test_the_warning_offers_qlora_where_its_4_bit_base_makes_the_difference(default_model_dir):
    options = {"model": str(default_model_dir), "method": "full", "cutoff_len": 128, "per_device_train_batch_size": 1}
    report = model_report(options, hardware=CPU, free_mb=1_000_000)
    qlora = next(row for row in report["fit"] if row["method"] == "qlora")["total_mb"]
    tight = model_report(options, hardware=CPU, free_mb=qlora + 1)
    assert f"It fits with method: qlora (about {qlora / 1024:.1f} GB)" in tight["warning"], tight["warning"]


def test_the_warning_offers_gradient_checkpointing_where_activations_are_what_does_not_fit(default_model_dir):
    options = {"model": str(default_model_dir), "method": "lora", "cutoff_len": 4096, "per_device_train_batch_size": 8}
    checkpointed = model_report({**options, "gradient_checkpointing": True}, hardware=CPU, free_mb=1_000_000)
    kept = model_report(options, hardware=CPU, free_mb=1_000_000)
    assert checkpointed["run"]["total_mb"] < kept["run"]["total_mb"]
    needed = checkpointed["run"]["total_mb"]
    tight = model_report(options, hardware=CPU, free_mb=needed + 1)
    assert f"gradient_checkpointing: true (about {needed / 1024:.1f} GB, slower)" in tight["warning"], tight["warning"]


def test_the_model_tab_shows_the_table_and_qlora_saving(tiny_model_dir):
    from webui.fit_view import fit_markdown

    text = fit_markdown(model_report({"model": str(tiny_model_dir)}, hardware=CPU, free_mb=100))
    assert "**LlamaForCausalLM** (`llama`) · 3.2M parameters" in text
    assert "| **lora** (chosen) | fp32 |" in text and "qlora instead of lora saves about" in text
    assert "⚠️ This run may not fit" in text


def test_a_model_without_readable_sizes_says_why_in_one_line(tmp_path):
    folder = tmp_path / "bin-only"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "llama"}))
    (folder / "pytorch_model.bin").write_bytes(b"")  # weights, but no header to read sizes from
    with pytest.raises(TuneForgeError, match="has no safetensors files"):
        read_shape(folder)
    with pytest.raises(TuneForgeError, match="not downloaded yet; the estimate reads local files only"):
        inspect_model("nobody-here/not-a-model")


@pytest.mark.parametrize("architecture", ["idefics3", "qwen2_vl"])
@pytest.mark.parametrize("tower, projector", [(True, True), (False, False)])
def test_lora_on_a_vision_model_trains_what_peft_counts(tiny_vision_model_of, architecture, tower, projector):
    """The image encoder's linears are adapted only when it trains, and a trained projector trains whole."""
    from peft import LoraConfig, get_peft_model

    from backend.models.vision import load_vision_model, lora_scope

    folder = tiny_vision_model_of(architecture)
    model = load_vision_model(folder)
    scope = lora_scope(model, freeze_tower=tower, freeze_projector=projector)
    peft_model = get_peft_model(model, LoraConfig(r=4, target_modules="all-linear", **scope))
    options = {"model": str(folder), "lora_rank": 4, "freeze_vision_tower": tower}
    config = TrainConfig.from_dict({**options, "freeze_multi_modal_projector": projector})
    shape = inspect_model(str(folder))
    assert shape.num_layers == 2 and all(".layers." in linear.name for linear in shape.linears)
    assert trainable_parameters(shape, config) == trained_count(peft_model)


def test_a_vision_models_images_count_in_its_estimate(tiny_vision_model_of, tmp_path):
    """The largest image's tokens come from the model's processor; the encoder's kept values grow with image_max_pixels
    for an encoder that reads any size, and with every layer when the tower trains."""
    from PIL import Image

    from backend.data.vision_encoding import prompt_inputs
    from backend.models.vision import image_token_id, load_processor

    folder = str(tiny_vision_model_of("qwen2_vl"))
    report = model_report({"model": folder, "image_max_pixels": 64 * 64}, CPU, free_mb=1e6)
    processor = load_processor(folder)
    path = str(tmp_path / "square.png")
    Image.new("RGB", (64, 64), (9, 9, 9)).save(path)
    ids = prompt_inputs(processor, [{"role": "user", "content": "<image>"}], [path])["input_ids"][0].tolist()
    assert report["image_tokens"] == ids.count(image_token_id(processor)) == 4  # 4x4 patches, 2x2 a token
    assert report["image_positions"] == 16
    from webui.fit_view import fit_markdown

    assert "The largest image (image_max_pixels) takes 4 of those tokens, and 16 positions" in fit_markdown(report)
    small = {row["method"]: row for row in report["fit"]}["lora"]
    tiny = model_report({"model": folder, "image_max_pixels": 32 * 32}, CPU, free_mb=1e6)
    trained = model_report({"model": folder, "image_max_pixels": 64 * 64, "freeze_vision_tower": False}, CPU, 1e6)
    assert tiny["image_positions"] == 4
    assert {r["method"]: r for r in tiny["fit"]}["lora"]["activations_mb"] < small["activations_mb"]
    assert {r["method"]: r for r in trained["fit"]}["lora"]["activations_mb"] > small["activations_mb"]
