"""Precision, quantization and launch choices per hardware: what runs, and one line for what cannot.

Hardware is a plain dict (what torch reports), so the choices for a GPU machine, and for CPUs with
and without native bf16, are checked here on any machine; the GPU runs themselves are in
test_gpu.py, the CPU's bf16 and QLoRA runs in test_cpu_bf16_qlora.py.
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys

import pytest

from backend.capability import cpu_only, describe, hardware_summary, plan_run, probe, unavailable_choices
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from backend.training.distributed import torchrun_command, trainer_arguments
from tests.helpers import ROOT, run_cli_in_process, write_config

AMPERE = {"cuda": True, "gpus": 2, "gpu_name": "A100", "bf16": True, "bitsandbytes": True}
TURING = {"cuda": True, "gpus": 1, "gpu_name": "T4", "bf16": False, "bitsandbytes": True}
# CPUs, with a bitsandbytes that has its CPU backend: a Zen 1 (AVX2, no native bf16), a Sapphire Rapids (AMX).
ZEN1 = {**cpu_only(), "bitsandbytes": True, "bitsandbytes_cpu": True}
SAPPHIRE_RAPIDS = {**cpu_only("AMX"), "bitsandbytes": True, "bitsandbytes_cpu": True}
ZEN4 = {**cpu_only("AVX512_BF16"), "bitsandbytes": True, "bitsandbytes_cpu": True}


def plan(hardware, **options):
    return plan_run(TrainConfig.from_dict(options), hardware)


@pytest.mark.parametrize(
    "options, line",
    [
        (
            {"precision": "bf16"},
            "bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX) or a CUDA GPU; this CPU has neither",
        ),
        ({"precision": "fp16"}, "fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)"),
        ({"strategy": "fsdp"}, "strategy=fsdp needs CUDA GPUs; on CPU use strategy ddp"),
        ({"nnodes": 2, "node_rank": 2}, "node_rank=2 must be below nnodes=2 (nodes count from 0)"),
    ],
)
def test_a_cpu_without_native_bf16_refuses_what_it_cannot_run_in_one_line(options, line):
    with pytest.raises(TuneForgeError) as refused:
        plan(ZEN1, **options)
    assert str(refused.value) == line


@pytest.mark.parametrize(
    "hardware, options, line",
    [
        ({**ZEN1, "bitsandbytes_cpu": False}, {"method": "qlora"}, "quantization_bit=4 needs a CUDA GPU, or a "),
        ({**ZEN1, "bitsandbytes": False}, {"quantization_bit": 8}, "quantization_bit=8 needs the bitsandbytes package"),
        (SAPPHIRE_RAPIDS, {"quantization_bit": 8, "precision": "bf16"}, "quantization_bit=8 on a CPU trains in fp32"),
        (SAPPHIRE_RAPIDS, {"precision": "fp16"}, "fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)"),
    ],
)
def test_quantization_on_a_cpu_needs_bitsandbytes_cpu_backend_and_8bit_trains_in_fp32(hardware, options, line):
    with pytest.raises(TuneForgeError, match="^" + re.escape(line)):
        plan(hardware, **options)


def test_a_cpu_runs_qlora_on_its_cpu_and_bf16_where_it_is_native():
    import torch

    qlora = plan(ZEN1, method="qlora")
    assert (qlora.name, qlora.quantization_bit, qlora.on_cpu) == ("fp32", 4, True)
    assert qlora.loading_arguments()["device_map"] == {"": "cpu"}  # never a GPU index on a CPU machine
    assert qlora.quantization_config().bnb_4bit_compute_dtype == torch.float32
    assert plan(ZEN1, quantization_bit=8).quantization_config().load_in_8bit
    bf16 = plan(SAPPHIRE_RAPIDS, precision="bf16")
    assert bf16.name == "bf16" and bf16.on_cpu
    # Mixed precision on a CPU: a frozen base may be stored in bf16; weights that train stay fp32 under autocast.
    assert bf16.load_dtype("lora") == torch.bfloat16
    assert bf16.load_dtype("full") == bf16.load_dtype("freeze") == torch.float32
    assert plan(SAPPHIRE_RAPIDS, method="qlora", precision="bf16").quantization_config().bnb_4bit_compute_dtype == (
        torch.bfloat16
    )


def test_the_devices_line_says_what_this_cpu_has():
    assert describe(ZEN1) == (
        "This machine: CPU only, without native bf16 (no AVX512_BF16 or AMX) — fp32; 4-bit/8-bit through "
        "bitsandbytes' CPU backend (8-bit in fp32); bf16 needs a CPU with native bf16 or a CUDA GPU, fp16 a CUDA GPU"
    )
    assert describe(SAPPHIRE_RAPIDS).startswith(
        "This machine: CPU only, with native bf16 (AMX) — auto trains lora in bf16, the rest in fp32; "
    )
    assert describe(ZEN4).startswith(
        "This machine: CPU only, with native bf16 (AVX512_BF16) — auto trains lora in bf16, the rest in fp32; "
    )
    assert "4-bit/8-bit need a CUDA GPU or a bitsandbytes with a CPU backend" in describe(
        {**ZEN1, "bitsandbytes_cpu": False}
    )


@pytest.mark.skipif(importlib.util.find_spec("deepspeed") is not None, reason="deepspeed is installed here")
def test_deepspeed_without_its_package_is_refused_before_the_model_loads():
    with pytest.raises(TuneForgeError) as refused:
        plan(AMPERE, strategy="deepspeed_zero3")
    assert str(refused.value) == "strategy=deepspeed_zero3 needs the deepspeed package: pip install deepspeed"


def cpu_machine():
    if hardware_summary()["cuda"]:
        pytest.skip("this machine has a CUDA GPU, which runs fp16")


def test_the_cli_refuses_fp16_on_cpu_before_loading_anything(tmp_path):
    cpu_machine()
    run_dir = tmp_path / "run"
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", precision="fp16", output_dir=str(run_dir)))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == ["error: fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)"]
    assert not run_dir.exists()


def test_starting_from_the_ui_refuses_with_the_same_line(workspace):
    cpu_machine()
    jobs = JobManager(workspace)
    try:
        with pytest.raises(TuneForgeError, match=r"^fp16 needs a CUDA GPU; on CPU use precision fp32 \(or auto\)$"):
            jobs.start({"precision": "fp16"})
        with pytest.raises(TuneForgeError, match=r"^node_rank=1: start the other nodes from a terminal"):
            jobs.start({"nnodes": 2, "node_rank": 1})
        assert jobs.list_runs() == []
    finally:
        jobs.shutdown()


def test_auto_precision_follows_the_hardware():
    assert plan(ZEN1).name == plan(ZEN1, method="qlora").name == "fp32"
    # bf16 by auto only where it was measured to pay (docs/benchmarks.md): LoRA on a CPU with AMX or AVX512_BF16.
    for cpu in (SAPPHIRE_RAPIDS, ZEN4):
        assert plan(cpu).name == plan(cpu, lora_rank=16, use_dora=True).name == "bf16"
        for options in ({"method": "qlora"}, {"quantization_bit": 8}, {"method": "full"}, {"method": "freeze"}):
            assert plan(cpu, **options).name == "fp32"
    assert plan(ZEN4, method="full", precision="bf16").name == "bf16"
    assert plan(AMPERE).name == "bf16"
    assert plan(TURING).name == "fp16"  # trained with the Trainer's gradient scaler
    assert plan(TURING, precision="fp32").name == "fp32"
    with pytest.raises(TuneForgeError, match="bf16 needs a GPU with bf16 support$"):
        plan(TURING, precision="bf16")


@pytest.mark.parametrize(
    "amx, avx512_bf16, expected",
    [(False, True, ("AVX512_BF16", "bf16")), (True, True, ("AMX", "bf16")), (False, False, ("", "fp32"))],
)
def test_auto_trains_lora_in_bf16_where_torch_finds_native_bf16(monkeypatch, amx, avx512_bf16, expected):
    """This Zen 3 has no native bf16, so torch's CPU checks are answered as a Zen 4/5 or a Sapphire Rapids would."""
    import torch

    from backend.capability import native_cpu_bf16

    monkeypatch.setattr(torch.ops.mkldnn, "_is_mkldnn_bf16_supported", lambda: True)  # true on any AVX512 CPU
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: amx)
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: avx512_bf16)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr("platform.machine", lambda: "x86_64")
    hardware = probe()
    assert (native_cpu_bf16(), plan(hardware).name) == expected
    assert plan(hardware, method="qlora").name == "fp32"


def test_qlora_is_nf4_with_double_quantization_and_8bit_is_llm_int8():
    import torch

    qlora = plan(AMPERE, method="qlora")
    assert (qlora.name, qlora.quantization_bit) == ("bf16", 4)
    settings = qlora.quantization_config()
    assert settings.load_in_4bit and settings.bnb_4bit_quant_type == "nf4" and settings.bnb_4bit_use_double_quant
    assert settings.bnb_4bit_compute_dtype == torch.bfloat16
    assert qlora.loading_arguments()["device_map"] == {"": 0}
    assert plan(TURING, method="qlora").quantization_config().bnb_4bit_compute_dtype == torch.float16
    eight = plan(AMPERE, method="lora", quantization_bit=8)
    assert eight.quantization_config().load_in_8bit and not eight.quantization_config().load_in_4bit
    assert plan(AMPERE).loading_arguments() == {}


@pytest.mark.parametrize(
    "options, line",
    [
        ({"method": "full", "quantization_bit": 4}, "quantization_bit=4 needs method lora or qlora"),
        ({"nproc_per_node": 4}, "nproc_per_node=4, but this machine has 2 CUDA GPU(s): one process per GPU"),
        ({"method": "qlora", "strategy": "fsdp"}, "quantization_bit with strategy=fsdp is not supported here"),
        ({"task": "classification", "method": "freeze"}, "method freeze trains generation models"),
    ],
)
def test_a_gpu_refuses_combinations_that_cannot_train(options, line):
    with pytest.raises(TuneForgeError, match=re.escape(line)):
        plan(AMPERE, **options)


def test_fp16_keeps_trained_weights_in_fp32_for_the_gradient_scaler():
    import torch

    fp16 = plan(TURING)
    assert fp16.load_dtype("lora") == torch.float16  # a frozen base may be stored in fp16
    assert fp16.load_dtype("full") == fp16.load_dtype("freeze") == torch.float32
    assert plan(AMPERE).load_dtype("full") == torch.bfloat16


def test_strategy_files_are_generated_into_the_run_folder(tmp_path, monkeypatch):
    zero3 = trainer_arguments(TrainConfig.from_dict({"strategy": "deepspeed_zero3"}), tmp_path, AMPERE)
    ds = json.loads((tmp_path / "ds_config.json").read_text())
    assert zero3 == {"deepspeed": str(tmp_path / "ds_config.json")}
    zero = ds["zero_optimization"]
    assert zero["stage"] == 3 and zero["stage3_gather_16bit_weights_on_model_save"]
    assert ds["bf16"] == {"enabled": "auto"} and ds["train_micro_batch_size_per_gpu"] == "auto"
    trainer_arguments(TrainConfig.from_dict({"strategy": "deepspeed_zero2"}), tmp_path, AMPERE)
    assert json.loads((tmp_path / "ds_config.json").read_text())["zero_optimization"]["stage"] == 2
    fsdp = trainer_arguments(TrainConfig.from_dict({"strategy": "fsdp"}), tmp_path, AMPERE)
    assert fsdp["fsdp"] is True and json.loads((tmp_path / "fsdp_config.json").read_text())["version"] == 2
    assert trainer_arguments(TrainConfig(), tmp_path, AMPERE) == {}  # one process on a GPU: nothing to set up
    assert trainer_arguments(TrainConfig(), tmp_path, cpu_only()) == {"use_cpu": True}  # bf16 autocast needs it
    monkeypatch.setenv("LOCAL_RANK", "0")
    assert trainer_arguments(TrainConfig(), tmp_path, cpu_only()) == {"use_cpu": True, "ddp_backend": "gloo"}


def test_the_launch_command_is_torchrun_with_the_config_keys():
    config = TrainConfig.from_dict({"nproc_per_node": 8, "nnodes": 2, "node_rank": 1, "master_addr": "10.0.0.1"})
    command = torchrun_command(config, "/runs/a/config.yaml")
    assert command[1:] == [
        "-m", "torch.distributed.run", "--nproc_per_node", "8", "--nnodes", "2", "--node_rank", "1",
        "--master_addr", "10.0.0.1", "--master_port", "29500", "--rdzv_conf", "timeout=600",
        "-m", "backend.train", "--config", "/runs/a/config.yaml",
    ]  # fmt: skip
    one_node = TrainConfig.from_dict({"nproc_per_node": 2})
    assert "--rdzv_conf" not in torchrun_command(one_node, "/runs/a/config.yaml")  # no other node to wait for


def test_the_ui_learns_the_hardware_without_loading_torch():
    app = (
        "import sys, json; from backend.capability import hardware_summary, describe; h = hardware_summary(); "
        "print(json.dumps([h, describe(h), 'torch' in sys.modules]))"
    )
    out = subprocess.run([sys.executable, "-c", app], cwd=ROOT, capture_output=True, text=True, check=True)
    hardware, line, loaded_torch = json.loads(out.stdout)
    assert not loaded_torch
    assert hardware == probe()  # the subprocess asked torch, on a CPU-only machine too
    assert line == describe(probe())
    if not hardware["cuda"]:
        missing = "without native bf16 (no AVX512_BF16 or AMX)"
        has = f"with native bf16 ({hardware['cpu_bf16']})" if hardware["bf16"] else missing
        assert line.startswith(f"This machine: CPU only, {has} — ")


def test_the_apps_answer_from_torch_is_kept_per_machine_state_and_a_failed_ask_is_not(tmp_path, monkeypatch):
    """A restarted app reads torch's answer instead of importing torch again; a GPU re-assigned through
    CUDA_VISIBLE_DEVICES is asked anew, a broken kept file too, and a probe that failed is never kept."""
    import backend.capability as capability

    monkeypatch.setenv("TUNEFORGE_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("CUDA_VISIBLE_DEVICES", raising=False)
    asked, answer = [], {**AMPERE, "cpu_bf16": "", "bitsandbytes_cpu": False}

    def torch_says(argv, **kwargs):
        asked.append(argv)
        return subprocess.CompletedProcess(argv, 0, stdout=f"a warning first\n{json.dumps(answer)}\n", stderr="")

    def ask():
        capability.hardware_summary.cache_clear()  # a new app process
        return capability.hardware_summary()

    monkeypatch.setattr(capability.subprocess, "run", torch_says)
    try:
        assert ask()["gpus"] == 2 and ask()["gpu_name"] == "A100" and len(asked) == 1
        assert ask()["bitsandbytes"] == capability.cpu_only()["bitsandbytes"]  # read from its files, not kept
        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1")
        answer = {**answer, "gpus": 1}
        assert ask()["gpus"] == 1 and len(asked) == 2
        kept = tmp_path / "cache" / "hardware" / f"{capability.machine_state()}.json"
        kept.write_text("{half a file")
        assert ask()["gpus"] == 1 and len(asked) == 3 and json.loads(kept.read_text())["gpus"] == 1

        monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
        answer = None  # the probe printed nothing usable
        assert ask() == capability.cpu_only() and ask() == capability.cpu_only() and len(asked) == 5
        assert not (tmp_path / "cache" / "hardware" / f"{capability.machine_state()}.json").exists()
    finally:
        capability.hardware_summary.cache_clear()  # the next test asks the real machine


def test_a_resume_cannot_change_quantization_frozen_layers_or_strategy():
    from backend.checkpoints import check_compatible

    before = TrainConfig.from_dict({"method": "freeze"}).to_dict()
    for key, value in (("quantization_bit", 4), ("freeze_trainable_layers", 4), ("strategy", "fsdp")):
        with pytest.raises(TuneForgeError, match=f"cannot resume: {key} was"):
            check_compatible(before, {**before, key: value})
    check_compatible(before, {**before, "precision": "fp32", "nproc_per_node": 2})  # these may change


def test_the_form_offers_only_what_the_hardware_runs_and_says_why():
    from webui.forms import hardware_overrides

    cpu = unavailable_choices(ZEN1)
    assert "method" not in cpu and "quantization_bit" not in cpu  # 4- and 8-bit through bitsandbytes' CPU backend
    assert set(cpu["precision"]) == {"bf16", "fp16"}
    assert set(cpu["strategy"]) == {"fsdp", "deepspeed_zero2", "deepspeed_zero3"}
    widgets = hardware_overrides(cpu)
    assert widgets["strategy"]["choices"] == ["ddp"] and widgets["strategy"]["interactive"] is False
    assert widgets["precision"]["choices"] == ["auto", "fp32"] and "interactive" not in widgets["precision"]
    assert (
        "Not on this machine — bf16: bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX)"
        in (widgets["precision"]["info"])
    )
    assert set(unavailable_choices(SAPPHIRE_RAPIDS)["precision"]) == {"fp16"}

    old_bitsandbytes = hardware_overrides(unavailable_choices({**ZEN1, "bitsandbytes_cpu": False}))
    assert old_bitsandbytes["method"]["choices"] == ["lora", "full", "freeze"]
    assert (
        "Not on this machine — qlora: quantization_bit=4 needs a CUDA GPU, or a bitsandbytes with its CPU "
        in (old_bitsandbytes["method"]["info"])
    )
    assert old_bitsandbytes["quantization_bit"]["choices"] == [0]
    assert old_bitsandbytes["quantization_bit"]["interactive"] is False

    ampere = unavailable_choices(AMPERE)
    assert "method" not in ampere and "precision" not in ampere and "quantization_bit" not in ampere
    if importlib.util.find_spec("deepspeed") is None:
        assert set(ampere["strategy"]) == {"deepspeed_zero2", "deepspeed_zero3"}
        assert "needs the deepspeed package" in ampere["strategy"]["deepspeed_zero2"]
    assert set(unavailable_choices(TURING)["precision"]) == {"bf16"}
    no_bnb = unavailable_choices({**AMPERE, "bitsandbytes": False})
    assert "needs the bitsandbytes package" in no_bnb["method"]["qlora"]


def test_a_loaded_config_the_machine_cannot_run_keeps_the_form_value_and_says_why():
    from backend.config import fields
    from webui.forms import form_updates

    cpu_machine()
    updates, kept = form_updates({"strategy": "fsdp", "precision": "fp16", "learning_rate": 1e-3})
    by_name = dict(zip([f.name for f in fields()], updates, strict=True))
    assert "value" not in by_name["strategy"] and "value" not in by_name["precision"]
    assert by_name["learning_rate"]["value"] == 1e-3
    assert kept == [
        "strategy=fsdp was not loaded: strategy=fsdp needs CUDA GPUs; on CPU use strategy ddp",
        "precision=fp16 was not loaded: fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)",
    ]
