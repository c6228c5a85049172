"""What this machine can run: the number formats a run trains in, and every refusal that needs no model.

Shared by three askers: the form (which offers only what runs here, `unavailable_choices`), the job
manager (which refuses a start in the job's own words) and the job (`plan_run`, before any model
loads). The hardware is described by a plain dict (see `cpu_only`), so the job asks torch (`probe`)
and the app, which must not import torch, asks a short subprocess (`hardware_summary`). A request
the machine cannot run is refused with one line before any model is loaded:
  bf16            needs a CUDA GPU with bf16 support (Ampere or newer)
  fp16            needs a CUDA GPU (trained with a gradient scaler)
  4-/8-bit        needs a CUDA GPU and bitsandbytes (QLoRA: NF4 with double quantization)
auto picks bf16 where supported, fp16 on older GPUs and fp32 on CPU.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.config import TrainConfig, fields
from backend.errors import TuneForgeError

# Strategies that split the model itself across processes (not only the data).
SHARDED_STRATEGIES = ("fsdp", "deepspeed_zero2", "deepspeed_zero3")
# The methods that train an adapter. Only these may quantize the base: a quantized weight cannot take a
# gradient, so an adapter must.
ADAPTER_METHODS = ("lora", "qlora")


def cpu_only() -> dict:
    return {"cuda": False, "gpus": 0, "gpu_name": "", "bf16": False, "bitsandbytes": _installed("bitsandbytes")}


def probe() -> dict:
    """The hardware as this process's torch sees it (imports torch: for the training job)."""
    import torch

    if not torch.cuda.is_available():
        return cpu_only()
    return {
        "cuda": True,
        "gpus": torch.cuda.device_count(),
        "gpu_name": torch.cuda.get_device_name(0),
        "bf16": torch.cuda.is_bf16_supported(),
        "bitsandbytes": _installed("bitsandbytes"),
    }


@functools.lru_cache(maxsize=1)
def hardware_summary() -> dict:
    """The hardware, without importing torch here: for the UI process.

    A machine without an NVIDIA driver is CPU only, known at once. Otherwise torch is asked in a
    short-lived subprocess (a few seconds, once per app), so the app itself never loads it.
    """
    if not _nvidia_driver_present():
        return cpu_only()
    code = "import json; from backend.capability import probe; print(json.dumps(probe()))"
    try:
        out = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=Path(__file__).parent.parent
        )
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return cpu_only()  # a broken driver trains nothing on the GPU either


def _nvidia_driver_present() -> bool:
    gpus = Path("/proc/driver/nvidia/gpus")
    return (gpus.is_dir() and any(gpus.iterdir())) or any(Path("/dev").glob("nvidia[0-9]*"))


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def describe(hardware: dict) -> str:
    """One line for the Train tab: what this machine trains with, and what it cannot."""
    if not hardware["cuda"]:
        return "This machine: CPU only — fp32; 4-bit/8-bit and bf16/fp16 need a CUDA GPU"
    gpus = f"{hardware['gpus']} × {hardware['gpu_name']}"
    if hardware["bf16"]:
        auto = "bf16"
    else:
        auto = "fp16 with a gradient scaler (this GPU has no bf16)"
    quant = "4-bit/8-bit available" if hardware["bitsandbytes"] else "4-bit/8-bit need bitsandbytes"
    return f"This machine: {gpus} — auto trains in {auto}; {quant}"


@dataclass(frozen=True)
class Precision:
    """The resolved choice: the float format to train in and the bits the base model is stored in."""

    name: str  # bf16 | fp16 | fp32
    quantization_bit: int  # 0, 4 or 8

    def describe(self) -> str:
        return f"{self.name}, {self.quantization_bit}-bit base" if self.quantization_bit else self.name

    def loading_arguments(self) -> dict:
        """from_pretrained arguments for a quantized base: bitsandbytes settings, and this rank's GPU."""
        quantization = self.quantization_config()
        if quantization is None:
            return {}
        # A quantized model cannot be moved after loading, so each rank loads it onto its own GPU.
        return {"quantization_config": quantization, "device_map": {"": int(os.environ.get("LOCAL_RANK", 0))}}

    def load_dtype(self, method: str):
        """The dtype the model's weights are loaded in.

        fp16 trains with a gradient scaler, which needs fp32 weights wherever gradients flow, so
        only a frozen base (LoRA) is stored in fp16; bf16 needs no scaler and stores everything in bf16.
        """
        import torch

        if self.name == "bf16":
            return torch.bfloat16
        if self.name == "fp16" and method in ADAPTER_METHODS:
            return torch.float16
        return torch.float32

    def quantization_config(self):
        """bitsandbytes settings for QLoRA (NF4, double quantization) or 8-bit LoRA; None when unquantized."""
        if not self.quantization_bit:
            return None
        import torch
        from transformers import BitsAndBytesConfig

        if self.quantization_bit == 8:
            return BitsAndBytesConfig(load_in_8bit=True)
        return BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type="nf4",
            bnb_4bit_use_double_quant=True,
            bnb_4bit_compute_dtype={"bf16": torch.bfloat16, "fp16": torch.float16}.get(self.name, torch.float32),
        )


def quantization_bits(config: TrainConfig) -> int:
    """method qlora means 4-bit unless quantization_bit says 8."""
    return config.quantization_bit or (4 if config.method == "qlora" else 0)


def choose(config: TrainConfig, hardware: dict) -> Precision:
    """The precision this run trains in on this hardware, or one line saying why it cannot."""
    bits = quantization_bits(config)
    if bits and config.method not in ADAPTER_METHODS:
        raise TuneForgeError(
            f"quantization_bit={bits} needs method lora or qlora: quantized weights cannot be trained directly"
        )
    if bits and not hardware["cuda"]:
        raise TuneForgeError(f"quantization_bit={bits} needs a CUDA GPU (bitsandbytes {bits}-bit)")
    if bits and not hardware["bitsandbytes"]:
        raise TuneForgeError(f"quantization_bit={bits} needs the bitsandbytes package: pip install bitsandbytes")
    name = config.precision
    if name == "auto":
        name = ("bf16" if hardware["bf16"] else "fp16") if hardware["cuda"] else "fp32"
    elif name == "bf16" and not hardware["bf16"]:
        raise TuneForgeError("bf16 needs a GPU with bf16 support" + ("" if hardware["cuda"] else "; this is a CPU"))
    elif name == "fp16" and not hardware["cuda"]:
        raise TuneForgeError("fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)")
    return Precision(name=name, quantization_bit=bits)


def plan_run(config: TrainConfig, hardware: dict) -> Precision:
    """Every refusal that needs no model, asked by the job and by the UI's start alike; returns the precision."""
    if config.task == "classification" and config.method in ("qlora", "freeze"):
        raise TuneForgeError(f"method {config.method} trains generation models (task sft or pt); use lora or full")
    if config.node_rank >= config.nnodes:
        raise TuneForgeError(f"node_rank={config.node_rank} must be below nnodes={config.nnodes} (nodes count from 0)")
    if config.strategy.startswith("deepspeed") and not _installed("deepspeed"):
        raise TuneForgeError(f"strategy={config.strategy} needs the deepspeed package: pip install deepspeed")
    if config.strategy != "ddp" and not hardware["cuda"]:
        raise TuneForgeError(f"strategy={config.strategy} needs CUDA GPUs; on CPU use strategy ddp")
    if hardware["cuda"] and config.nproc_per_node > hardware["gpus"]:
        raise TuneForgeError(
            f"nproc_per_node={config.nproc_per_node}, but this machine has {hardware['gpus']} CUDA GPU(s): "
            "one process per GPU"
        )
    if quantization_bits(config) and config.strategy in ("fsdp", "deepspeed_zero3"):
        raise TuneForgeError(
            f"quantization_bit with strategy={config.strategy} is not supported here; use ddp or deepspeed_zero2"
        )
    return choose(config, hardware)


# Options whose choices depend on the hardware: the UI offers only those that plan_run accepts.
HARDWARE_OPTIONS = ("method", "strategy", "precision", "quantization_bit")


def unavailable_choices(hardware: dict) -> dict[str, dict]:
    """For each hardware-bound option, the choices this machine cannot run and plan_run's reason for each.

    Asked of plan_run itself, with the defaults and one option changed, so the UI says exactly
    what Start would refuse, in the same words.
    """
    refused: dict[str, dict] = {}
    for f in fields():
        if f.name not in HARDWARE_OPTIONS:
            continue
        for choice in f.metadata["choices"]:
            try:
                plan_run(TrainConfig.from_dict({f.name: choice}), hardware)
            except TuneForgeError as exc:
                refused.setdefault(f.name, {})[choice] = str(exc)
    return refused
