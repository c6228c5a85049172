"""Will it fit? The memory a training run needs, from the model's shapes and the run's options, before it starts.

The peak is the sum of what a step holds at once (sizes in MB of 2^20 bytes):
- weights: each stored in the dtype the job loads it in (`Precision.load_dtype`), the decoder's linear
  weights in 4 or 8 bits on a quantized base (plus bitsandbytes' block scales), everything else
  (embedding, norms, an untied head) in fp32 there, as `prepare_model_for_kbit_training` leaves it;
- gradients and AdamW's two moments, for the trained parameters only: the adapters (r × (in + out) per
  adapted linear, kept in fp32 by PEFT), every weight (full), or the trained layers (freeze);
- activations kept for the backward pass: batch × cutoff tokens (padding-free batches hold no more,
  `backend/training/batching.py`) × the values a decoder layer keeps per token, for every layer the
  gradient passes through (from the lowest trained layer up), plus each adapter's input and output;
  gradient checkpointing (QLoRA's, or `gradient_checkpointing: true`) keeps a measured share of that;
- the head's logits and their gradient, for the trained tokens only (at most every token);
- the runtime: torch, transformers, PEFT, the tokenizer and the Trainer's own buffers on a CPU (measured
  by `bench/fit_check.py`); the CUDA context on a GPU (not measured here: a typical figure).
The token count is the worst case, every example as long as cutoff_len, so the estimate is an upper
bound for data of shorter examples. Its error against measured peaks is in docs/benchmarks.md.
A vision-language model's image tokens are among those tokens (cutoff_len counts them); its image encoder
adds its own activations over the largest image's patches (backend/models/vision_cost.py), one image a row:
every layer's when the tower trains, one layer's at a time when it is frozen. Its frozen encoder and
projector get no adapters, and a trained projector trains whole. Not measured against a peak yet.
"""

from __future__ import annotations

import dataclasses
import shutil
import subprocess
from dataclasses import dataclass

from backend.capability import ADAPTER_METHODS, Precision, hardware_summary, plan_run
from backend.config import PREFERENCE_TASKS, TrainConfig
from backend.errors import TuneForgeError
from backend.models.info import ModelShape, inspect_model
from backend.models.vision_cost import ImageCost, image_cost

MB = 2**20
METHODS = ("lora", "qlora", "full", "freeze")
# The constants below were fitted to the peaks bench/fit_check.py measured on the development CPU
# (docs/benchmarks.md, "Will it fit?": SmolLM2-135M with lora, qlora, full and freeze, and a 3M model).
# The runtime: torch, transformers, the tokenizer, the data and the Trainer, before the model's share. A
# process that only imports the job's modules and loads the tokenizer already holds 575 MB.
RUNTIME_CPU_MB = 700.0
RUNTIME_GPU_MB = 600.0  # CUDA context and kernels, outside torch's allocator; not measured here
# Values a decoder layer keeps per token for its backward pass, as multiples of hidden_size and of
# intermediate_size: the norms', attention's and the MLP's (gate, up, activation, product) tensors.
# Fitted to full fine-tuning's peak; each LoRA adapter keeps its input and output besides (in + out).
KEPT_PER_HIDDEN = 6.5
KEPT_PER_INTERMEDIATE = 4.0
# QLoRA's gradient checkpointing (prepare_model_for_kbit_training) kept 73% of LoRA's activations on the
# CPU, not the layer inputs alone: measured, not derived (bitsandbytes' CPU backend; a GPU is unmeasured).
# The same share stands for `gradient_checkpointing: true` on an unquantized base, where it is unmeasured.
CHECKPOINTED_SHARE = 0.73
LOGIT_COPIES = 2.0  # the trained tokens' logits and their gradient
# NF4 with double quantization: an 8-bit scale per 64 weights and an fp32 one per 256 of those.
NF4_BYTES = 0.5 + 1 / 64 + 4 / (64 * 256)


@dataclass(frozen=True)
class Estimate:
    """One run's memory, by part, in MB."""

    method: str
    precision: str  # Precision.describe(): fp32, bf16, "fp32, 4-bit base", ...
    device: str  # cpu | gpu
    trainable: int
    weights_mb: float
    gradients_mb: float
    optimizer_mb: float
    activations_mb: float
    logits_mb: float
    runtime_mb: float
    loading_mb: float = 0.0  # the peak while a quantized base loads, where that is above training's (0: not)

    @property
    def training_mb(self) -> float:
        parts = (self.weights_mb, self.gradients_mb, self.optimizer_mb, self.activations_mb, self.logits_mb)
        return sum(parts) + self.runtime_mb

    @property
    def total_mb(self) -> float:
        return max(self.training_mb, self.loading_mb)

    def as_dict(self) -> dict:
        parts = {k: round(v, 1) if isinstance(v, float) else v for k, v in dataclasses.asdict(self).items()}
        return {**parts, "training_mb": round(self.training_mb, 1), "total_mb": round(self.total_mb, 1)}


def stored_bytes(precision: Precision, method: str) -> int:
    """Bytes per unquantized weight as loaded: `Precision.load_dtype` without importing torch (a test holds
    the two together)."""
    if precision.name == "bf16" and (method in ADAPTER_METHODS or not precision.on_cpu):
        return 2
    if precision.name == "fp16" and method in ADAPTER_METHODS:
        return 2
    return 4


def trainable_parameters(shape: ModelShape, config: TrainConfig) -> int:
    """What the method trains: PEFT's count for an adapter, every weight, or the chosen decoder layers."""
    # A vision model's projector, where it trains, trains whole (LoRA's modules_to_save) or with the rest (full).
    projector = 0 if config.freeze_multi_modal_projector else shape.projector_parameters
    if config.method in ADAPTER_METHODS:
        adapters = sum(config.lora_rank * (lin.in_features + lin.out_features) for lin in adapted(shape, config))
        return adapters + projector
    if config.method == "full":
        frozen = shape.tower_parameters if config.freeze_vision_tower else 0
        return shape.parameters - frozen - shape.projector_parameters + projector
    return sum(shape.layer_parameters[index] for index in freeze_layers(shape, config))


def adapted(shape: ModelShape, config: TrainConfig) -> list:
    """The linears LoRA adapts: all of the decoder's ('all', as PEFT's all-linear), or those named; and a
    vision model's image encoder's too when it trains (freeze_vision_tower false)."""
    linears = list(shape.linears) + ([] if config.freeze_vision_tower else list(shape.tower_linears))
    target = config.lora_target.strip()
    if target in ("", "all"):
        return linears
    names = {name.strip() for name in target.split(",") if name.strip()}
    return [linear for linear in linears if linear.name.rsplit(".", 1)[-1] in names]


def freeze_layers(shape: ModelShape, config: TrainConfig) -> range:
    count, n = shape.num_layers, config.freeze_trainable_layers
    if n == 0 or abs(n) > count:
        raise TuneForgeError(f"freeze_trainable_layers={n}: the model has {count} decoder layers")
    return range(count - n, count) if n > 0 else range(-n)


def estimate(shape: ModelShape, config: TrainConfig, precision: Precision, images: ImageCost | None = None) -> Estimate:
    """The peak memory of one run of config on this model, in the precision it resolved to; images: what the
    largest image costs a vision-language model (its encoder's activations join the activations)."""
    trainable = trainable_parameters(shape, config)
    # Adapters stay fp32 (PEFT's autocast_adapter_dtype); trained base weights keep their loaded dtype.
    trained_bytes = 4 if config.method in ADAPTER_METHODS else stored_bytes(precision, config.method)
    adapter_bytes = trainable * 4 if config.method in ADAPTER_METHODS else 0  # beside the base's weights
    tokens = batch_tokens(config)
    on_gpu = not precision.on_cpu
    return Estimate(
        method=config.method,
        precision=precision.describe(),
        device="gpu" if on_gpu else "cpu",
        trainable=trainable,
        weights_mb=(_weights_bytes(shape, config, precision) + adapter_bytes) / MB,
        gradients_mb=trainable * trained_bytes / MB,
        optimizer_mb=2 * trainable * trained_bytes / MB,
        activations_mb=(_activation_bytes(shape, config, precision, tokens) + _encoder_bytes(config, precision, images))
        / MB,
        logits_mb=0.0 if config.task in ("classification", "rm") else tokens * shape.vocab_size * 4 * LOGIT_COPIES / MB,
        runtime_mb=RUNTIME_GPU_MB if on_gpu else RUNTIME_CPU_MB,
        loading_mb=(loading / MB + RUNTIME_CPU_MB)
        if (loading := _quantized_loading_bytes(shape, config, precision))
        else 0.0,
    )


def _quantized_loading_bytes(shape: ModelShape, config: TrainConfig, precision: Precision) -> float:
    """A quantized base's peak while it loads, less the runtime: the checkpoint's files, mapped and read whole
    (safetensors maps them, and every page read stays resident until loading ends), beside the quantized
    model being built. Measured on the CPU (docs/benchmarks.md, "Will it fit?"): a 1.5B model in bf16
    files peaked at 5,399 MB while loading and 3,977 MB while training. Unquantized loads are not counted:
    where the file's dtype is the loaded one, the model's tensors are the mapped pages themselves (SmolLM2:
    593 MB loading against 522 MB of weights); a dtype change on load is not measured."""
    if not precision.quantization_bit or not precision.on_cpu:
        return 0.0  # a GPU loads into its own memory; the host's mapped pages are not what the estimate counts
    return shape.stored_bytes + _weights_bytes(shape, config, precision)


def batch_tokens(config: TrainConfig) -> int:
    """Tokens in one forward pass at most; a preference pair's chosen and rejected answers both run, and a
    grpo completion follows its prompt."""
    if config.task == "grpo":
        return config.per_device_train_batch_size * (config.cutoff_len + config.max_completion_length)
    pairs = 2 if config.task in (*PREFERENCE_TASKS, "rm") else 1
    return config.per_device_train_batch_size * config.cutoff_len * pairs


def _weights_bytes(shape: ModelShape, config: TrainConfig, precision: Precision) -> float:
    if not precision.quantization_bit:
        # dpo and kto hold a frozen reference copy unless an adapter can be switched off instead.
        # So does grpo with a KL term (grpo_beta > 0).
        referenced = config.task in ("dpo", "kto") or config.task == "grpo" and config.grpo_beta > 0
        copies = 2 if referenced and config.method not in ADAPTER_METHODS else 1
        return shape.parameters * stored_bytes(precision, config.method) * copies
    linear = shape.linear_weights
    if precision.quantization_bit == 4:
        quantized = linear * NF4_BYTES
    else:  # LLM.int8: a byte a weight and an fp32 scale per output row
        quantized = linear + 4 * sum(layer.out_features for layer in shape.linears)
    return quantized + (shape.parameters - linear) * 4


def _activation_bytes(shape: ModelShape, config: TrainConfig, precision: Precision, tokens: int) -> float:
    """What the backward pass keeps: each layer's tensors from the lowest trained layer up, and the adapters'."""
    per_layer = KEPT_PER_HIDDEN * shape.hidden_size + KEPT_PER_INTERMEDIATE * shape.intermediate_size
    value_bytes = 4 if precision.name == "fp32" else 2
    lowest = min(freeze_layers(shape, config)) if config.method == "freeze" else 0
    kept = per_layer * (shape.num_layers - lowest)
    if config.method in ADAPTER_METHODS:
        kept += sum(linear.in_features + linear.out_features for linear in adapted(shape, config))
    checkpointed = precision.quantization_bit or config.gradient_checkpointing
    share = CHECKPOINTED_SHARE if checkpointed else 1.0
    return tokens * value_bytes * kept * share


def _encoder_bytes(config: TrainConfig, precision: Precision, images: ImageCost | None) -> float:
    """A vision model's image encoder over a step's images (one a row at most image_max_pixels: the common
    layout; more a row cost more): every layer's kept values when the tower trains, else one layer's at a
    time, as a forward pass without gradients frees each layer's values after it. The images' tokens in
    the language model are among the batch's tokens already (cutoff_len counts them)."""
    if images is None:
        return 0.0
    per_layer = KEPT_PER_HIDDEN * images.hidden_size + KEPT_PER_INTERMEDIATE * images.intermediate_size
    layers = images.layers if not config.freeze_vision_tower else 1
    value_bytes = 4 if precision.name == "fp32" else 2
    return config.per_device_train_batch_size * images.positions * per_layer * layers * value_bytes


def free_memory_mb(hardware: dict) -> float | None:
    """What a job may still use: available RAM on a CPU; the first GPU's free memory (None if unknown)."""
    if not hardware["cuda"]:
        import psutil

        return psutil.virtual_memory().available / MB
    if not shutil.which("nvidia-smi"):
        return None
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=memory.free", "--format=csv,noheader,nounits", "-i", "0"],
            capture_output=True,
            text=True,
            timeout=10,
        )
        return float(out.stdout.strip().splitlines()[0])  # MiB
    except (OSError, subprocess.TimeoutExpired, ValueError, IndexError):
        return None


def fit_warning(row: Estimate, free_mb: float | None, fixes: list[str] | None = None) -> str:
    """One line when the estimate exceeds free memory, saying by how much and which single change
    (`fitting_changes`) would fit; '' when it fits or free is unknown."""
    if free_mb is None or row.total_mb <= free_mb:
        return ""
    where = "GPU memory" if row.device == "gpu" else "RAM"
    advice = (
        f"It fits with {', or '.join(fixes)}."
        if fixes
        else "No single change of method, gradient checkpointing, cutoff_len or batch size fits: pick a smaller model."
    )
    return (
        f"⚠️ This run may not fit: {row.method} ({row.precision}) needs about {gb(row.total_mb)} but "
        f"{gb(free_mb)} of {where} is free, {gb(row.total_mb - free_mb)} short. {advice}"
    )


def fitting_changes(
    shape: ModelShape, config: TrainConfig, hardware: dict, free_mb: float, images: ImageCost | None = None
) -> list[str]:
    """The single settings that bring this run within free_mb, each with its estimate: qlora (where this
    machine runs it), gradient checkpointing, the longest cutoff_len that fits (halving), the largest batch
    that fits (with the gradient accumulation that keeps the effective batch)."""

    def needs(variant: TrainConfig | None = None, **changes) -> float | None:
        variant = dataclasses.replace(variant or config, **changes)
        try:
            return estimate(shape, variant, plan_run(variant, hardware), images).total_mb
        except TuneForgeError:
            return None

    fixes = []
    if config.method != "qlora":
        total = needs(method_config(config, "qlora"))
        if total is not None and total <= free_mb:
            fixes.append(f"method: qlora (about {gb(total)})")
    if not config.gradient_checkpointing and config.method != "qlora":
        total = needs(gradient_checkpointing=True)
        if total is not None and total <= free_mb:
            fixes.append(f"gradient_checkpointing: true (about {gb(total)}, slower)")
    cutoff = config.cutoff_len // 2
    while cutoff >= 64:
        total = needs(cutoff_len=cutoff)
        if total is not None and total <= free_mb:
            fixes.append(f"cutoff_len: {cutoff} (about {gb(total)})")
            break
        cutoff //= 2
    batch = config.per_device_train_batch_size
    for smaller in range(batch - 1, 0, -1):
        total = needs(per_device_train_batch_size=smaller)
        if total is not None and total <= free_mb:
            steps = -(-batch * config.gradient_accumulation_steps // smaller)
            fixes.append(
                f"per_device_train_batch_size: {smaller} with gradient_accumulation_steps: {steps} "
                f"(about {gb(total)}, the same effective batch)"
            )
            break
    return fixes


def gb(mb: float) -> str:
    return f"{mb / 1024:.1f} GB" if mb >= 1024 else f"{mb:.0f} MB"


def method_config(config: TrainConfig, method: str) -> TrainConfig:
    """config with another method; a quantized base only for the adapters (qlora is 4-bit unless 8 is asked)."""
    bits = config.quantization_bit if method in ADAPTER_METHODS else 0
    return dataclasses.replace(config, method=method, quantization_bit=bits)


def fit_rows(
    shape: ModelShape, config: TrainConfig, hardware: dict, images: ImageCost | None = None
) -> dict[str, Estimate | str]:
    """Each method's estimate in the precision auto (or the chosen precision) resolves to here, or why it cannot run."""
    rows: dict[str, Estimate | str] = {}
    for method in METHODS:
        variant = method_config(config, method)
        try:
            rows[method] = estimate(shape, variant, plan_run(variant, hardware), images)  # refused as Start would
        except TuneForgeError as exc:
            rows[method] = str(exc)
    return rows


def model_report(options: dict, hardware: dict | None = None, free_mb: float | None = None) -> dict:
    """The Model tab's and the `model_info` endpoint's answer for a config dict (TrainConfig keys).

    architecture, parameters and sizes; `fit`: per method its estimate or `unavailable` (why); `run`: the
    config's own method; `warning`: a line when that run exceeds free memory. free_mb defaults to this
    machine's, read now.
    """
    config = TrainConfig.from_dict(options)
    hardware = hardware if hardware is not None else hardware_summary()
    shape = inspect_model(config.model, config.task)
    free = free_mb if free_mb is not None else free_memory_mb(hardware)
    images = image_cost(shape.path, config.image_max_pixels) if shape.tower_parameters else None
    rows = fit_rows(shape, config, hardware, images)
    run = rows.get(config.method)
    fit = [
        {"method": m, **row.as_dict(), "fits": None if free is None else row.total_mb <= free}
        if isinstance(row, Estimate)
        else {"method": m, "unavailable": row}
        for m, row in rows.items()
    ]
    return {
        "model": config.model,
        "model_type": shape.model_type,
        "architecture": shape.architecture,
        "parameters": shape.parameters,
        "layers": shape.num_layers,
        "hidden_size": shape.hidden_size,
        "vocab_size": shape.vocab_size,
        "batch_tokens": batch_tokens(config),
        # The largest image's tokens (at image_max_pixels) and the image encoder's positions for it; 0 for text.
        "image_tokens": images.tokens if images else 0,
        "image_positions": images.positions if images else 0,
        "device": "gpu" if hardware["cuda"] else "cpu",
        "free_mb": None if free is None else round(free, 1),
        "fit": fit,
        "run": next(row for row in fit if row["method"] == config.method),
        "warning": fit_warning(run, free, _fixes(shape, config, hardware, free, run, images))
        if isinstance(run, Estimate)
        else "",
    }


def _fixes(
    shape: ModelShape, config: TrainConfig, hardware: dict, free: float | None, run: Estimate, images: ImageCost | None
) -> list[str]:
    """fitting_changes, asked only when the run does not fit."""
    if free is None or run.total_mb <= free:
        return []
    return fitting_changes(shape, config, hardware, free, images)
