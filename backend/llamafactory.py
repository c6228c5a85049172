"""LLaMA-Factory training YAMLs, read as TuneForge configs.

`python -m backend.train --config lf.yaml` and the UI's "Load config" both come through
`load_config`: a YAML of our own options passes straight to TrainConfig, and one written for
`llamafactory-cli train` is translated key by key first. Every LLaMA-Factory key is one of:
  - translated to our option (model_name_or_path → model, finetuning_type → method, stage → task, ...);
  - accepted without effect, because TuneForge already does what it asks (plot_loss, packing, ...),
    with the reason printed;
  - refused, naming the key, because honouring it is not possible here (use_galore, ...); stage ppo
    translates, and TrainConfig then refuses it in one line (the pinned TRL has no PPO trainer).
Nothing is dropped without a word. Options the YAML leaves out take LLaMA-Factory's defaults where
they change what is trained (learning rate, batch size, scheduler, cutoff_len, val_size), so the
same file trains the same way in both tools.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from backend.config import TrainConfig, parse_yaml, read_config_text
from backend.data.registry import REGISTRY_FILE
from backend.errors import TuneForgeError
from backend.models.sources import offline_model_spec
from backend.templates import TEMPLATE_NAMES

OUR_KEYS = {f.name for f in dataclasses.fields(TrainConfig)}
# Read the same way by both tools (transformers' TrainingArguments or LLaMA-Factory's own arguments).
SAME_KEYS = (
    "dataset", "eval_dataset", "cutoff_len", "val_size", "learning_rate", "num_train_epochs", "max_steps",
    "per_device_train_batch_size", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio",
    "weight_decay", "max_grad_norm", "seed", "logging_steps", "eval_steps", "save_steps", "output_dir",
    "lora_rank", "lora_alpha", "lora_dropout", "lora_target", "max_samples", "save_total_limit",
    "resume_from_checkpoint", "report_to", "trust_remote_code", "pref_beta", "ref_model",
    "freeze_trainable_layers", "use_dora", "use_rslora", "pissa_init", "pissa_iter",
    "reward_model", "ppo_epochs", "ppo_buffer_size", "ppo_target",
    "freeze_vision_tower", "freeze_multi_modal_projector", "image_max_pixels",
)  # fmt: skip
# Precision and launch keys, translated by _precision and _deepspeed.
PRECISION_KEYS = ("bf16", "fp16", "quantization_bit", "deepspeed")
RENAMED = {"model_name_or_path": "model", "finetuning_type": "method", "stage": "task"}
# LLaMA-Factory's template names: ours where they match, and the ones we know under another name.
TEMPLATES = {name: name for name in TEMPLATE_NAMES} | {"qwen": "chatml", "phi": "phi3"}
# Defaults of LLaMA-Factory (and the TrainingArguments under it) that differ from ours.
LF_DEFAULTS = {
    "learning_rate": 5e-5,
    "per_device_train_batch_size": 8,
    "lr_scheduler_type": "linear",
    "cutoff_len": 2048,
    "val_size": 0.0,
    "gradient_checkpointing": True,  # its disable_gradient_checkpointing is false unless the YAML says so
}
STAGES = ("sft", "pt", "dpo", "kto", "rm", "ppo")  # ppo is then refused by TrainConfig, naming why
# LLaMA-Factory's pref_loss values and what they become here (stage dpo); the rest are refused.
PREF_LOSSES = {
    "sigmoid": ("dpo", "sigmoid"),
    "ipo": ("dpo", "ipo"),
    "hinge": ("dpo", "hinge"),
    "orpo": ("orpo", "orpo"),
}


def _any(value) -> bool:
    return True


def _is(*allowed):
    return lambda value: value in allowed


def _none(value) -> bool:
    return value in (None, False, "none", "None", "null", [], ["none"])


# key: (values that change nothing here, why nothing changes).
NO_EFFECT = {
    "do_train": (_is(True), "TuneForge's CLI always trains"),
    "do_eval": (_any, "validation loss is computed whenever val_size or eval_dataset gives validation rows"),
    "do_predict": (_is(False), "predictions are made in the Evaluate tab"),
    "overwrite_cache": (_any, "datasets are read fresh for every run; there is no cache"),
    "preprocessing_num_workers": (_any, "data is prepared in one process"),
    "preprocessing_batch_size": (_any, "data is prepared in one process"),
    "dataloader_num_workers": (_any, "data is loaded in the training process"),
    "plot_loss": (_any, "the loss is always charted from events.jsonl"),
    "overwrite_output_dir": (_any, "a run writes into output_dir either way"),
    "save_only_model": (_any, "checkpoints are the Trainer's own"),
    "pure_bf16": (_is(False), "mixed precision keeps fp32 master weights where gradients need them"),
    "ddp_timeout": (_any, "processes wait for each other torch's default 30 minutes"),
    "quantization_method": (_is("bnb", "bitsandbytes"), "quantization is bitsandbytes'"),
    "quantization_type": (_is("nf4"), "4-bit quantization is NF4"),
    "double_quantization": (_is(True), "4-bit quantization always uses double quantization"),
    "freeze_trainable_modules": (_is("all"), "freeze tuning trains whole decoder layers"),
    "freeze_extra_modules": (_none, "freeze tuning trains decoder layers only"),
    "flash_attn": (_any, "transformers picks the attention kernel"),
    "per_device_eval_batch_size": (_any, "validation uses per_device_train_batch_size"),
    "eval_strategy": (_is("steps", "no"), "validation runs every eval_steps when there are validation rows"),
    "save_strategy": (_is("steps"), "checkpoints follow save_steps"),
    "logging_dir": (_any, "logs go to the run folder"),
    "run_name": (_any, "the run is named by its folder"),
    "mix_strategy": (_is("concat"), "several datasets are read one after another"),
    "packing": (
        _any,
        "batches are always padding-free: a batch's examples share one row, never attending to each other",
    ),
    "train_on_prompt": (_is(False), "prompts are always masked from the loss"),
    "mask_history": (_is(False), "every answer of a conversation is trained"),
    "use_fast_tokenizer": (_is(True), "the fast tokenizer is always used"),
    "warmup_steps": (_is(0, None), "use warmup_ratio instead"),
    "pref_ftx": (_is(0, 0.0, None), "no SFT term is added to the preference loss"),
    "optim": (_is("adamw_torch"), "TuneForge trains with AdamW (adamw_torch)"),
    "pissa_convert": (_any, "a PiSSA adapter is always saved as plain LoRA, which loads on the unchanged model"),
    "loraplus_lr_embedding": (_is(1e-6), "LoRA+ trains LoRA on embedding layers at 1e-6, LLaMA-Factory's default"),
    "reward_model_type": (_is("lora", "full"), "a reward model run's own folder says whether it is an adapter"),
}
NO_EFFECT_REFUSAL = {  # what to say when a NO_EFFECT key holds a value we cannot honour
    "do_train": "this YAML does not train; remove it or set do_train: true",
}
LF_KEYS = set(SAME_KEYS) | set(RENAMED) | set(NO_EFFECT) | set(PRECISION_KEYS)
LF_KEYS |= {"dataset_dir", "template", "adapter_name_or_path", "pref_loss", "loraplus_lr_ratio"}
LF_KEYS |= {"disable_gradient_checkpointing"}
# Keys only a LLaMA-Factory YAML has: one of them marks the file as LLaMA-Factory's.
MARKERS = LF_KEYS - OUR_KEYS


@dataclass
class LoadedConfig:
    """Options keyed as TrainConfig fields, plus what the translation did, one line each."""

    options: dict[str, Any]
    notes: list[str] = field(default_factory=list)
    from_llamafactory: bool = False

    def report(self, where: str) -> str:
        """The translation as a person reads it in the terminal and train.log."""
        lines = [f"{where}: LLaMA-Factory config, translated to TuneForge options:"]
        lines += ["  " + line for line in yaml.safe_dump(self.options, sort_keys=False).splitlines()]
        lines += [f"  note: {note}" for note in self.notes]
        return "\n".join(lines)


def is_llamafactory(raw: dict[str, Any]) -> bool:
    return bool(MARKERS & set(raw))


def load_config(path_or_text: str | Path) -> tuple[LoadedConfig, str]:
    """(options, where) from a YAML file, or from YAML text; a LLaMA-Factory YAML is translated."""
    path = _as_path(path_or_text)
    if path is None:
        where, text, folders = "config", str(path_or_text), [Path.cwd()]
    else:
        where, folders = path.name, [Path.cwd(), path.resolve().parent]
        text = read_config_text(path)
    raw = parse_yaml(text, where)
    if not is_llamafactory(raw):
        return LoadedConfig(options=raw), where
    return translate(raw, where, folders), where


def load_config_file(path_or_text: str | Path) -> dict[str, Any]:
    """Every TrainConfig option, validated, from a YAML file or text (ours or LLaMA-Factory's): for "Load config"."""
    loaded, _where = load_config(path_or_text)
    return TrainConfig.from_dict(loaded.options).to_dict()


def load_train_config(path: str | Path) -> tuple[TrainConfig, LoadedConfig, str]:
    """The CLI's reading of --config: the validated config, and the translation to print when there was one."""
    loaded, where = load_config(path)
    return TrainConfig.from_dict(loaded.options), loaded, where


def translate(raw: dict[str, Any], where: str, folders: list[Path]) -> LoadedConfig:
    """Our options for a LLaMA-Factory YAML; every key it cannot honour is named in one refusal."""
    options: dict[str, Any] = {}
    notes: list[str] = []
    problems: list[str] = []
    ignored: dict[str, list[str]] = {}
    for key, value in raw.items():
        target = RENAMED.get(key, key)
        if key in OUR_KEYS and key not in LF_KEYS:
            options[key] = value  # one of our own options, written into a LLaMA-Factory YAML
        elif key in SAME_KEYS:
            options[key] = ",".join(map(str, value)) if isinstance(value, list) else value  # lora_target: [q, v]
        elif key in RENAMED:
            try:
                options[target] = _renamed(key, value, notes)
            except TuneForgeError as exc:
                problems.append(str(exc))
        elif key == "dataset_dir":
            try:
                options["dataset_dir"] = _dataset_dir(value, folders, notes)
            except TuneForgeError as exc:
                problems.append(str(exc))
        elif key == "pref_loss":
            pass  # read with stage, after the loop
        elif key == "template":
            options["template"] = _template(value, notes)
        elif key == "disable_gradient_checkpointing":
            options["gradient_checkpointing"] = not value
        elif key == "loraplus_lr_ratio":
            options[key] = 0.0 if value is None else value  # LLaMA-Factory's None is our 0: LoRA+ off
        elif key in PRECISION_KEYS:
            try:
                options.update(_precision(key, value, raw, folders, notes))
            except TuneForgeError as exc:
                problems.append(str(exc))
        elif key in NO_EFFECT:
            harmless, why = NO_EFFECT[key]
            if harmless(value):
                ignored.setdefault(why, []).append(key)
            else:
                problems.append(f"{key}: {value!r}: {NO_EFFECT_REFUSAL.get(key, why)}")
        elif key == "adapter_name_or_path" and _none(value):
            ignored.setdefault("no adapter to start from", []).append(key)
        else:
            problems.append(_unsupported(key, value))
        if key != target and target in raw:
            problems.append(f"both {key} and {target} are set; keep one")
    if options.get("task") in ("dpo", "kto"):
        try:
            _pref_loss(raw, options, notes)
        except TuneForgeError as exc:
            problems.append(str(exc))
    elif "pref_loss" in raw:
        problems.append(f"pref_loss applies to stage dpo or kto, not {options.get('task', 'sft')}")
    if problems:
        raise TuneForgeError(f"{where}: cannot train this LLaMA-Factory config: " + "; ".join(problems))
    _apply_defaults(options, raw, folders, notes)
    notes += [f"{', '.join(keys)}: no effect here ({why})" for why, keys in ignored.items()]
    return LoadedConfig(options=options, notes=notes, from_llamafactory=True)


def _renamed(key: str, value: Any, notes: list[str]) -> Any:
    if key == "model_name_or_path":
        spec = offline_model_spec(str(value or ""))
        if spec != value:
            notes.append(f"model_name_or_path {value} is the embedded {spec!r} model (same weights, offline)")
        return spec
    if key == "finetuning_type":
        if value not in ("lora", "full", "freeze"):
            raise TuneForgeError(f"finetuning_type: {value!r} is not supported (use lora, full or freeze)")
        return value
    if value not in STAGES:
        raise TuneForgeError(f"stage: {value!r} is not supported (use {', '.join(STAGES)})")
    return value


def _pref_loss(raw: dict[str, Any], options: dict[str, Any], notes: list[str]) -> None:
    """stage dpo with pref_loss: orpo is our task orpo; stage kto has a loss of its own."""
    value = raw.get("pref_loss", "sigmoid")
    if options.get("task") == "kto":
        options["pref_loss"] = "kto"
        if "pref_loss" in raw:
            notes.append(f"pref_loss {value}: no effect with stage kto, which trains with the KTO loss")
        return
    if value not in PREF_LOSSES:
        raise TuneForgeError(f"pref_loss: {value!r} is not supported (use {', '.join(PREF_LOSSES)})")
    task, loss = PREF_LOSSES[value]
    if options.get("task") == "dpo":
        options["task"], options["pref_loss"] = task, loss
        if task == "orpo":
            notes.append("stage dpo with pref_loss orpo: task orpo (TRL's ORPO trainer)")


def _precision(key: str, value: Any, raw: dict[str, Any], folders: list[Path], notes: list[str]) -> dict[str, Any]:
    """bf16/fp16 booleans, quantization_bit and a DeepSpeed file, as our precision, quantization and strategy."""
    if key == "quantization_bit":
        return {"quantization_bit": 0 if _none(value) else value}
    if key == "deepspeed":
        return {} if _none(value) else {"strategy": _deepspeed(value, folders, notes)}
    if raw.get("bf16") is True and raw.get("fp16") is True:
        raise TuneForgeError("bf16 and fp16 are both true; keep one")
    if value is not True:
        return {}  # false: LLaMA-Factory's own default, which leaves the choice to precision auto here
    if key == "bf16":
        # auto is bf16 wherever bf16 runs; naming bf16 would refuse the YAML on a CPU, where LLaMA-Factory trains.
        notes.append("bf16: true is precision auto: bf16 on GPUs that support it, fp32 on CPU")
        return {"precision": "auto"}
    return {"precision": "fp16"}


def _deepspeed(value: Any, folders: list[Path], notes: list[str]) -> str:
    """A DeepSpeed JSON becomes strategy deepspeed_zero2/3; TuneForge writes its own ds_config.json for the run."""
    path = next((f / str(value) for f in folders if (f / str(value)).is_file()), None)
    if path is None:
        raise TuneForgeError(f"deepspeed: {value}: file not found")
    try:
        zero = json.loads(path.read_text(encoding="utf-8")).get("zero_optimization", {})
    except (OSError, ValueError, AttributeError) as exc:
        raise TuneForgeError(f"deepspeed: {value}: not a DeepSpeed JSON config ({exc})") from None
    stage = zero.get("stage", 0)
    if stage not in (2, 3):
        raise TuneForgeError(f"deepspeed: {value}: ZeRO stage {stage} is not offered; use a stage 2 or 3 config")
    dropped = [k for k in ("offload_optimizer", "offload_param") if k in zero]
    more = f"; its {' and '.join(dropped)} settings are not carried over" if dropped else ""
    notes.append(f"deepspeed: {value}: strategy deepspeed_zero{stage}, with a generated ds_config.json{more}")
    return f"deepspeed_zero{stage}"


def _dataset_dir(value: Any, folders: list[Path], notes: list[str]) -> str:
    if value == "ONLINE":  # LLaMA-Factory's word for "dataset names are hub ids"
        notes.append("dataset_dir ONLINE: dataset names are read as hub dataset ids")
        return ""
    for folder in folders:
        candidate = (folder / str(value)).expanduser()
        if (candidate / REGISTRY_FILE).is_file():
            return str(candidate.resolve())
    tried = " or ".join(str(f / str(value)) for f in folders)
    raise TuneForgeError(f"dataset_dir: no {REGISTRY_FILE} in {tried}")


def _template(value: Any, notes: list[str]) -> str:
    if value in (None, ""):
        return "chatml"  # LLaMA-Factory's own default: no template named
    ours = TEMPLATES.get(str(value), "chatml")
    if ours != value:
        notes.append(
            f"template {value}: chats are formatted by the model's own chat template; {ours} only if it has none"
        )
    return ours


def _apply_defaults(options: dict[str, Any], raw: dict[str, Any], folders: list[Path], notes: list[str]) -> None:
    """LLaMA-Factory's defaults for what the YAML leaves out, where ours differ."""
    applied = {key: value for key, value in LF_DEFAULTS.items() if key not in options}
    if "lora_alpha" not in options:
        applied["lora_alpha"] = 2 * int(options.get("lora_rank", 8))  # LLaMA-Factory: lora_rank * 2
    options.update(applied)
    if applied:
        notes.append("LLaMA-Factory defaults for keys left out: " + ", ".join(f"{k} {v}" for k, v in applied.items()))
    if options.get("max_samples") is None:
        options["max_samples"] = 0
    if "dataset_dir" not in raw:
        for folder in folders:
            if (folder / "data" / REGISTRY_FILE).is_file():  # LLaMA-Factory's default dataset_dir is ./data
                options["dataset_dir"] = str((folder / "data").resolve())
                notes.append(f"dataset_dir: LLaMA-Factory's default data folder, {options['dataset_dir']}")
                break
    if "," in str(options.get("dataset", "")) and options.get("max_samples"):
        notes.append("max_samples caps the mixed datasets together (LLaMA-Factory caps each one)")


def _unsupported(key: str, value: Any) -> str:
    if key == "adapter_name_or_path":
        return f"adapter_name_or_path: {value!r}: training on top of an existing adapter is not supported yet"
    hint = difflib.get_close_matches(key, sorted(LF_KEYS | OUR_KEYS), n=1)
    suggestion = f" (did you mean '{hint[0]}'?)" if hint else ""
    return f"'{key}' is not supported{suggestion}"


def _as_path(path_or_text: str | Path) -> Path | None:
    """A path when given one (or text that names a file); None for YAML text."""
    if isinstance(path_or_text, Path):
        return path_or_text
    text = str(path_or_text)
    if not text.strip() or "\n" in text or (":" in text and not Path(text).expanduser().exists()):
        return None
    return Path(text).expanduser()
