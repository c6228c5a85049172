"""What this machine can run: the number formats a run trains in, and every refusal that needs no model.

Shared by three askers: the form (which offers only what runs here, `unavailable_choices`), the job
manager (which refuses a start in the job's own words) and the job (`plan_run`, before any model
loads). The hardware is described by a plain dict (see `cpu_only`), so the job asks torch (`probe`)
and the app, which must not import torch, asks a short subprocess (`hardware_summary`). A request
the machine cannot run is refused with one line before any model is loaded:
  bf16            needs a CUDA GPU with bf16 (Ampere or newer) or a CPU with native bf16 (AVX512_BF16 or AMX)
  fp16            needs a CUDA GPU (trained with a gradient scaler)
  4-/8-bit        needs bitsandbytes: on a CUDA GPU, or on the CPU through its CPU backend (8-bit in fp32 there)
auto picks bf16 where the GPU supports it, fp16 on older GPUs; on a CPU, bf16 only where measured to pay
(CPU_AUTO_BF16: LoRA on AMX or AVX512_BF16), else fp32.
"""

from __future__ import annotations

import functools
import hashlib
import importlib.metadata
import importlib.util
import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

from backend.config import TrainConfig, fields
from backend.errors import TuneForgeError
from backend.files import write_text_atomically
from backend.paths import PROJECT_ROOT, model_cache_dir

# Strategies that split the model itself across processes (not only the data).
SHARDED_STRATEGIES = ("fsdp", "deepspeed_zero2", "deepspeed_zero3")
# The methods that train an adapter. Only these may quantize the base: a quantized weight cannot take a
# gradient, so an adapter must.
ADAPTER_METHODS = ("lora", "qlora")
# Where precision auto trains in bf16 on a CPU: (its native bf16, method), each measured faster at about
# the same eval loss (docs/benchmarks.md): LoRA on an AMX CPU, 1.4x fp32 (2026-12-02); LoRA on a Zen 5 with
# AVX512_BF16 and no AMX, 1.61x at 135M and 1.86x at 0.4B, eval loss +1.8% (2026-12-03, issue 33). Not (yet)
# chosen: qlora (1.08x on AMX: its kbit preparation checkpoints every layer), full and freeze (not measured).
CPU_AUTO_BF16 = {("AMX", "lora"), ("AVX512_BF16", "lora")}


def cpu_only(cpu_bf16: str = "") -> dict:
    """A machine that trains on its CPU. cpu_bf16 names the CPU's native bf16 instructions ('' for none).

    With no argument: a CPU whose bf16 is unknown, so treated as absent (the safe fallback).
    "bf16" says whether the device that trains computes bf16 natively, here as on a GPU.
    """
    return {
        "cuda": False,
        "gpus": 0,
        "gpu_name": "",
        "bf16": bool(cpu_bf16),
        "cpu_bf16": cpu_bf16,
        "bitsandbytes": _installed("bitsandbytes"),
        "bitsandbytes_cpu": _bitsandbytes_has_cpu_backend(),
    }


def probe() -> dict:
    """The hardware as this process's torch sees it (imports torch: for the training job)."""
    import torch

    cpu_bf16 = native_cpu_bf16()
    if not torch.cuda.is_available():
        return cpu_only(cpu_bf16)
    return {
        "cuda": True,
        "gpus": torch.cuda.device_count(),
        "gpu_name": torch.cuda.get_device_name(0),
        "bf16": torch.cuda.is_bf16_supported(),
        "cpu_bf16": cpu_bf16,
        "bitsandbytes": _installed("bitsandbytes"),
        "bitsandbytes_cpu": _bitsandbytes_has_cpu_backend(),
    }


def native_cpu_bf16() -> str:
    """The CPU's native bf16 instructions, as torch's CPU checks see them: AMX, AVX512_BF16, ARM_BF16 or ''.

    Not oneDNN's "bf16 supported" alone: on x86 it is true on any AVX512 CPU, where bf16 is emulated
    by conversions and runs slower than fp32. AMX is named first: where both exist, oneDNN uses it.
    The checks are private torch functions, so a torch without them reads as no native bf16.
    """
    import platform

    import torch

    def asks(check) -> bool:
        try:
            return bool(check())
        except (AttributeError, RuntimeError):
            return False

    if not asks(lambda: torch.ops.mkldnn._is_mkldnn_bf16_supported()):
        return ""
    if asks(lambda: torch.cpu._is_amx_tile_supported()):
        return "AMX"
    if asks(lambda: torch.cpu._is_avx512_bf16_supported()):
        return "AVX512_BF16"
    if platform.machine().lower() in ("aarch64", "arm64"):  # oneDNN's check is the CPU's own bf16 there
        return "ARM_BF16"
    return ""


# What torch reports of the machine; the bitsandbytes entries are read from its files at every ask.
TORCH_FACTS = ("cuda", "gpus", "gpu_name", "bf16", "cpu_bf16")
# Environment variables that change which GPUs torch sees.
DEVICE_VARIABLES = ("CUDA_VISIBLE_DEVICES", "HIP_VISIBLE_DEVICES", "ROCR_VISIBLE_DEVICES")


@functools.lru_cache(maxsize=1)
def hardware_summary() -> dict:
    """The hardware, without importing torch here: for the UI process.

    torch is asked in a short-lived subprocess, so the app itself never loads it: on a GPU machine for
    the GPU, on any machine for the CPU's native bf16. That costs a torch import (2–3 CPU-seconds, a
    third of an app's start on a 2-core CPU), and its answer cannot change before the machine reboots,
    its GPUs are re-assigned or another torch is installed: so it is kept per such state
    (`machine_state`) beside the model cache, and a restarted app, the CLI or a sweep reads it.
    If the subprocess fails, the answer is a CPU without bf16, which refuses rather than crashes
    (and is not kept, so the next start asks again).
    """
    state = machine_state()
    kept = model_cache_dir().parent / "hardware" / f"{state}.json" if state else None
    facts = _read_facts(kept) if kept else None
    if facts is None:
        code = "import json; from backend.capability import probe; print(json.dumps(probe()))"
        try:
            out = subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=PROJECT_ROOT
            )
            facts = {k: json.loads(out.stdout.strip().splitlines()[-1])[k] for k in TORCH_FACTS}
        except (OSError, subprocess.TimeoutExpired, ValueError, IndexError, KeyError, TypeError):
            return cpu_only()
        if kept:
            try:
                kept.parent.mkdir(parents=True, exist_ok=True)
                write_text_atomically(kept, json.dumps(facts))
            except OSError:
                pass  # a read-only cache: ask again next time
    return {**cpu_only(), **facts}


def machine_state() -> str:
    """A name for what torch's answer depends on: this boot, the Python and torch that ask, the GPU devices
    and the variables that hide some. '' where there is no boot id (not Linux): then torch is asked each time."""
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text(encoding="utf-8").strip()
    except OSError:
        return ""
    try:
        torch_version = importlib.metadata.version("torch")
    except importlib.metadata.PackageNotFoundError:
        torch_version = "none"
    devices = sorted(p.name for p in Path("/dev").glob("nvidia*")) + sorted(p.name for p in Path("/dev").glob("kfd"))
    variables = [f"{name}={os.environ.get(name)}" for name in DEVICE_VARIABLES]
    state = "|".join([boot, sys.executable, torch_version, *devices, *variables])
    return hashlib.sha256(state.encode()).hexdigest()[:16]


def _read_facts(path: Path) -> dict | None:
    try:
        facts = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return facts if isinstance(facts, dict) and set(facts) == set(TORCH_FACTS) else None


def _installed(package: str) -> bool:
    return importlib.util.find_spec(package) is not None


def _bitsandbytes_has_cpu_backend() -> bool:
    """Whether the installed bitsandbytes ships its CPU backend, found by its files: importing it loads torch."""
    spec = importlib.util.find_spec("bitsandbytes")
    return bool(spec and spec.submodule_search_locations) and any(
        (Path(folder) / "backends" / "cpu").is_dir() for folder in spec.submodule_search_locations
    )


def describe(hardware: dict) -> str:
    """One line for the Train tab: what this machine trains with, and what it cannot."""
    quant = (
        "4-bit/8-bit need bitsandbytes"
        if not hardware["bitsandbytes"]
        else "4-bit/8-bit available"
        if hardware["cuda"]
        else "4-bit/8-bit through bitsandbytes' CPU backend (8-bit in fp32)"
        if hardware.get("bitsandbytes_cpu")
        else "4-bit/8-bit need a CUDA GPU or a bitsandbytes with a CPU backend"
    )
    if not hardware["cuda"]:
        if hardware["bf16"]:
            auto = [method for isa, method in sorted(CPU_AUTO_BF16) if isa == hardware["cpu_bf16"]]
            auto_line = f"{', '.join(auto)} in bf16, the rest in fp32" if auto else "in fp32, bf16 on request"
            return (
                f"This machine: CPU only, with native bf16 ({hardware['cpu_bf16']}) — auto trains {auto_line}; "
                f"{quant}; fp16 needs a CUDA GPU"
            )
        return (
            "This machine: CPU only, without native bf16 (no AVX512_BF16 or AMX) — fp32; "
            f"{quant}; bf16 needs a CPU with native bf16 or a CUDA GPU, fp16 a CUDA GPU"
        )
    gpus = f"{hardware['gpus']} × {hardware['gpu_name']}"
    if hardware["bf16"]:
        auto = "bf16"
    else:
        auto = "fp16 with a gradient scaler (this GPU has no bf16)"
    return f"This machine: {gpus} — auto trains in {auto}; {quant}"


@dataclass(frozen=True)
class Precision:
    """The resolved choice: the float format to train in, the bits the base model is stored in, and where."""

    name: str  # bf16 | fp16 | fp32
    quantization_bit: int  # 0, 4 or 8
    on_cpu: bool = False

    def describe(self) -> str:
        return f"{self.name}, {self.quantization_bit}-bit base" if self.quantization_bit else self.name

    def loading_arguments(self) -> dict:
        """from_pretrained arguments for a quantized base: bitsandbytes settings, and where its weights live."""
        quantization = self.quantization_config()
        if quantization is None:
            return {}
        # A quantized model cannot be moved after loading, so each rank loads it onto its own GPU, or the CPU.
        device = "cpu" if self.on_cpu else int(os.environ.get("LOCAL_RANK", 0))
        return {"quantization_config": quantization, "device_map": {"": device}}

    def load_dtype(self, method: str):
        """The dtype the model's weights are loaded in.

        fp16 trains with a gradient scaler, which needs fp32 weights wherever gradients flow, so
        only a frozen base (LoRA) is stored in fp16. bf16 needs no scaler: on a GPU everything is
        stored in bf16; on a CPU only a frozen base is, and trained weights stay fp32 under the
        Trainer's bf16 autocast (mixed precision), as transformers runs bf16 there. A frozen base kept
        in fp32 would be cast at every step for the same arithmetic: on the benchmark it trained at
        294 tokens/s against 403, with the same eval loss (docs/benchmarks.md).
        """
        import torch

        if self.name == "bf16" and (method in ADAPTER_METHODS or not self.on_cpu):
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


def saved_quantization_bits(saved: dict) -> int:
    """quantization_bits of a finished run's config.yaml, read from the two keys it needs, so that any run's
    config answers (an imported adapter's, or one saved by an older version)."""
    return quantization_bits(TrainConfig.from_dict({k: saved[k] for k in ("method", "quantization_bit") if k in saved}))


def uses_bitsandbytes(config: TrainConfig) -> bool:
    """Whether the run loads bitsandbytes: it quantizes, or its model may be saved quantized. A job that does not
    hides the library (backend.train.hide_unused_bitsandbytes), and only such a job can fork from the job server."""
    return bool(quantization_bits(config)) or any(may_be_saved_quantized(s) for s in (config.model, config.ref_model))


def saved_run_uses_bitsandbytes(saved: dict) -> bool:
    """uses_bitsandbytes for a finished run's config.yaml: loading it again (to merge, serve or evaluate) may."""
    return bool(saved_quantization_bits(saved)) or may_be_saved_quantized(str(saved.get("model") or "default"))


def hide_bitsandbytes() -> None:
    """Keep bitsandbytes out of a process that loads nothing quantized. peft imports it whenever it is installed,
    and its import compiles kernels through torch.compile: about 1.5 CPU-s of every process that imports peft
    (2-core Zen 4), for a library such a process never calls. Once bitsandbytes is imported, this does nothing."""
    # find_spec() answers None for a name whose sys.modules entry is None, so transformers and peft
    # both take the library as absent, and an import of it raises ImportError.
    sys.modules.setdefault("bitsandbytes", None)


def may_be_saved_quantized(spec: str) -> bool:
    spec = (spec or "").strip()
    if not spec or spec == "default" or Path(spec).expanduser().is_file():  # none, or the embedded or a GGUF
        return False
    config = Path(spec).expanduser() / "config.json"
    if not config.exists():
        return True
    try:
        return "quantization_config" in json.loads(config.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False


def choose(config: TrainConfig, hardware: dict) -> Precision:
    """The precision this run trains in on this hardware, or one line saying why it cannot."""
    bits = quantization_bits(config)
    if bits and config.method not in ADAPTER_METHODS:
        raise TuneForgeError(
            f"quantization_bit={bits} needs method lora or qlora: quantized weights cannot be trained directly"
        )
    if bits and not hardware["bitsandbytes"]:
        raise TuneForgeError(f"quantization_bit={bits} needs the bitsandbytes package: pip install bitsandbytes")
    if bits and not hardware["cuda"] and not hardware.get("bitsandbytes_cpu"):
        raise TuneForgeError(
            f"quantization_bit={bits} needs a CUDA GPU, or a bitsandbytes with its CPU backend: "
            "pip install -U bitsandbytes"
        )
    name = config.precision
    if name == "auto":
        name = auto_precision(config.method, bits, hardware)
    elif name == "bf16" and not hardware["bf16"]:
        raise TuneForgeError(
            "bf16 needs a GPU with bf16 support"
            if hardware["cuda"]
            else "bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX) or a CUDA GPU; this CPU has neither"
        )
    elif name == "fp16" and not hardware["cuda"]:
        raise TuneForgeError("fp16 needs a CUDA GPU; on CPU use precision fp32 (or auto)")
    if bits == 8 and name == "bf16" and not hardware["cuda"]:
        raise TuneForgeError(
            "quantization_bit=8 on a CPU trains in fp32 (bitsandbytes' 8-bit CPU layers run many times slower "
            "in bf16); use precision fp32 or auto, or quantization_bit 4"
        )
    return Precision(name=name, quantization_bit=bits, on_cpu=not hardware["cuda"])


def auto_precision(method: str, bits: int, hardware: dict) -> str:
    """precision auto: bf16 where the GPU has it, else fp16 with a scaler; on a CPU, bf16 where CPU_AUTO_BF16 says."""
    if hardware["cuda"]:
        return "bf16" if hardware["bf16"] else "fp16"
    measured = (hardware.get("cpu_bf16"), method) in CPU_AUTO_BF16 and not bits
    return "bf16" if measured else "fp32"


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


def unavailable_choices(hardware: dict) -> dict[str, dict]:
    """For each hardware-bound option, the choices this machine cannot run and plan_run's reason for each.

    Asked of plan_run itself, with the defaults and one option changed, so the UI says exactly
    what Start would refuse, in the same words.
    """
    refused: dict[str, dict] = {}
    for f in fields():
        if not f.metadata["hardware"]:  # its choices do not depend on the machine
            continue
        for choice in f.metadata["choices"]:
            try:
                plan_run(TrainConfig.from_dict({f.name: choice}), hardware)
            except TuneForgeError as exc:
                refused.setdefault(f.name, {})[choice] = str(exc)
    return refused
