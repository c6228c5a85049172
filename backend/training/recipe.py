"""What every task's recipe shares: setup(), train(), save() around transformers' Trainer.

Each task family has its own module (sft, classification, preference) with a Recipe subclass,
and backend.training.task_recipes.recipe_for picks one. One callback (backend.training.callbacks) turns the
Trainer's logs into events. The order of setup matters: the tokenizer comes first because tokenising the data
needs it, and the data comes before the model so that a bad dataset fails in seconds, before the slow model load.
"""

from __future__ import annotations

import importlib.util
import json
import os
import random
from pathlib import Path

import torch
from transformers import (
    EarlyStoppingCallback,
    PrinterCallback,
    Trainer,
    TrainingArguments,
)

from backend.capability import ADAPTER_METHODS, SHARDED_STRATEGIES, choose, probe
from backend.config import TrainConfig
from backend.data import DataOptions, load_splits
from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.files import save_staged, write_text_atomically
from backend.models.sources import load_tokenizer
from backend.models.template_choice import describe_template, record_in_config
from backend.paths import default_workspace
from backend.runfiles import CONFIG_FILE, METRICS_FILE
from backend.task_metrics import greater_is_better
from backend.templates import template_in_use
from backend.training.callbacks import TRAINER_METRICS, EventsCallback, RankReport, finite_or_none
from backend.training.distributed import is_main_rank, trainer_arguments
from backend.training.flops import step_shape, training_flops_per_token
from backend.training.labelled_positions import score_labelled_positions_only
from backend.training.lora_variants import (
    drop_initial_adapter,
    keep_initial_adapter,
    lora_variant_options,
    save_converted_adapter,
    use_loraplus,
)
from backend.training.matmul_peak import cached_peak_gflops


class Recipe:
    """What every task shares: data splits, training arguments, the Trainer, early stopping, saving.

    A task subclass sets self.model, self.tokenizer, self.train_set and self.eval_set in setup(),
    and may provide a data collator and compute_metrics.
    """

    lora_task_type = "CAUSAL_LM"
    padding_free = False  # batches flattened into one row: every token counted is a real one
    # torch_compile is measured on, and applied to, the recipes that say so: a TRL trainer's generation or
    # reference passes, a vision tower or a classification head would each need their own measurement.
    compiles_blocks = False

    def __init__(self, config: TrainConfig, events: EventLog, run_dir: Path, resume_from: Path | None = None):
        self.config, self.events, self.run_dir = config, events, run_dir
        self.resume_from = resume_from
        self.best: dict | None = None
        self.attention: str | None = None  # what packed rows attend with, where a recipe packs them
        self.hardware = probe()
        self.precision = choose(config, self.hardware)

    def load_data(self):
        cfg = self.config
        random.seed(cfg.seed)
        torch.manual_seed(cfg.seed)
        self.events.emit("status", message="reading dataset")
        splits = load_splits(DataOptions.from_config(cfg, default_workspace()))
        for line in splits.summary():
            print(line, flush=True)
            self.events.emit("status", message=line)
        if cfg.early_stopping_patience and not splits.validation:
            raise TuneForgeError("early stopping needs validation data: set val_size or eval_dataset")
        return splits

    def load_chat_tokenizer(self):
        """The model's tokenizer with the chat template this run trains with, which save() keeps beside the weights.

        Whether that is the model's own template or the named fallback goes into the events and config.yaml.
        """
        cfg = self.config
        self.events.emit("status", message=f"loading tokenizer from {self.model_path}")
        tokenizer = load_tokenizer(self.model_path, cfg.template, cfg.trust_remote_code)
        used = template_in_use(tokenizer, cfg.template)
        line = f"chat template: {describe_template(used, cfg.template)}"
        print(line, flush=True)
        self.events.emit("status", message=line, chat_template=used)
        if is_main_rank():
            record_in_config(self.run_dir / CONFIG_FILE, used, cfg.template)
        return tokenizer

    def _lora_config(self):
        from peft import LoraConfig

        cfg = self.config
        target = (
            "all-linear" if cfg.lora_target.strip() in ("", "all") else [t.strip() for t in cfg.lora_target.split(",")]
        )
        return LoraConfig(
            r=cfg.lora_rank,
            lora_alpha=cfg.lora_alpha,
            lora_dropout=cfg.lora_dropout,
            target_modules=target,
            task_type=self.lora_task_type,
            **lora_variant_options(cfg),
        )

    def _wrap_lora(self, model):
        from peft import get_peft_model

        try:
            model = get_peft_model(model, self._lora_config())
        except ValueError as exc:
            raise self._lora_error(exc) from None
        if self.precision.name == "bf16" and self.precision.on_cpu:
            # PEFT casts each adapter's input to the adapter's fp32 and autocast casts it back to bf16:
            # two copies of every activation per adapter, for nothing. Autocast alone casts the small adapter.
            for layer in model.modules():
                if hasattr(layer, "cast_input_dtype_enabled"):
                    layer.cast_input_dtype_enabled = False
        return model

    def _lora_error(self, exc: ValueError) -> TuneForgeError:
        return TuneForgeError(f"lora_target={self.config.lora_target!r}: {str(exc).splitlines()[0]}")

    def _adapt(self, model):
        """The model as the method trains it: an adapter (on a quantized base for qlora), some layers, or all."""
        model = self._prepare(model)
        return self._wrap_lora(model) if self.config.method in ADAPTER_METHODS else model

    def _prepare(self, model):
        """Everything _adapt does but add the adapter: a quantized base made trainable, or layers frozen."""
        from backend.training.freeze import train_only_layers

        cfg = self.config
        if self.precision.quantization_bit:
            from peft import prepare_model_for_kbit_training

            model = prepare_model_for_kbit_training(model, gradient_checkpointing_kwargs={"use_reentrant": False})
        if cfg.method == "freeze":
            trained = train_only_layers(model, cfg.freeze_trainable_layers)
            print(f"freeze: training decoder layers {trained[0]}-{trained[-1]} only", flush=True)
        return model

    def report_size(self) -> None:
        trainable = sum(p.numel() for p in self.model.parameters() if p.requires_grad)
        total = sum(p.numel() for p in self.model.parameters())
        print(f"trainable parameters: {trainable:,} of {total:,} ({100 * trainable / total:.2f}%)", flush=True)
        # Weights and buffers as loaded and adapted: what quantization saves, beside the runtime's fixed cost.
        weights_mb = round(self.model.get_memory_footprint() / 2**20, 1)
        self.events.emit("status", message=f"model weights in memory: {weights_mb} MB", weights_mb=weights_mb)

    def collator(self):
        raise NotImplementedError

    def compute_metrics(self):
        return None

    def _training_args(self) -> TrainingArguments:
        return TrainingArguments(**self._training_options())

    def _training_options(self) -> dict:
        """TrainingArguments' keywords for this config; trainers with their own arguments class add theirs."""
        cfg = self.config
        has_eval = len(self.eval_set) > 0
        early = bool(cfg.early_stopping_patience)
        # Early stopping keeps the best checkpoint, so checkpoints must fall on evaluation steps.
        save_steps = cfg.eval_steps if early else (cfg.save_steps or 500)
        return dict(
            output_dir=str(self.run_dir),
            learning_rate=cfg.learning_rate,
            num_train_epochs=cfg.num_train_epochs,
            max_steps=cfg.max_steps,
            per_device_train_batch_size=cfg.per_device_train_batch_size,
            per_device_eval_batch_size=cfg.per_device_train_batch_size,
            gradient_accumulation_steps=cfg.gradient_accumulation_steps,
            lr_scheduler_type=cfg.lr_scheduler_type,
            warmup_steps=cfg.warmup_ratio,  # transformers 5 reads a value below 1 as a ratio
            weight_decay=cfg.weight_decay,
            max_grad_norm=cfg.max_grad_norm,
            logging_steps=cfg.logging_steps,
            eval_strategy="steps" if has_eval else "no",
            eval_steps=cfg.eval_steps,
            save_strategy="steps" if (cfg.save_steps or early) else "no",
            save_steps=save_steps,
            save_total_limit=cfg.save_total_limit or None,
            load_best_model_at_end=early,
            metric_for_best_model=cfg.metric_for_best_model if early else None,
            greater_is_better=greater_is_better(cfg.task, cfg.metric_for_best_model) if early else None,
            seed=cfg.seed,
            bf16=self.precision.name == "bf16",
            fp16=self.precision.name == "fp16",  # the Trainer adds the gradient scaler fp16 needs
            # An adapter always takes part in the forward pass, so DDP need not search for unused weights
            # (and kbit preparation's gradient checkpointing breaks that search).
            ddp_find_unused_parameters=False if cfg.method in ADAPTER_METHODS else None,
            # Stated for every trainer: TRL's configs (dpo, kto, orpo, grpo, rm) turn it on by default, which cost
            # those tasks a recomputed forward pass per step that the option never asked for. qlora's
            # preparation has already turned it on for its 4-bit base.
            # (transformers 5 names it activation_checkpointing; the option keeps the name people know.)
            activation_checkpointing=cfg.gradient_checkpointing or cfg.method == "qlora",
            activation_checkpointing_kwargs={"use_reentrant": False},
            include_num_input_tokens_seen="all" if self.padding_free else "non_padding",
            logging_nan_inf_filter=False,  # a non-finite loss must reach the callback, which stops the run
            report_to=self._trackers(),
            disable_tqdm=True,
            dataloader_num_workers=0,
            dataloader_pin_memory=torch.cuda.is_available(),
            remove_unused_columns=False,
            **trainer_arguments(cfg, self.run_dir, self.hardware),
        )

    def _trackers(self) -> str:
        tracker = self.config.report_to
        if tracker == "none":
            return "none"
        package = {"tensorboard": "tensorboard", "mlflow": "mlflow", "wandb": "wandb"}[tracker]
        if importlib.util.find_spec(package) is None:
            raise TuneForgeError(f"report_to={tracker} needs the {package} package: pip install {package}")
        if tracker == "tensorboard":
            # Set, not defaulted: a process that trains twice (a test, a sweep) would log the second run into the first.
            os.environ["TENSORBOARD_LOGGING_DIR"] = str(self.run_dir / "tensorboard")
        return tracker

    def _speed_meter(self) -> EventsCallback:
        """The events callback, told what a token costs and what the hardware can do (its cached peak), for MFU."""
        device = "cuda" if torch.cuda.is_available() else "cpu"
        peak = cached_peak_gflops(device, self.precision.name)
        per_token = training_flops_per_token(step_shape(self.model), self.head_share())
        return EventsCallback(
            self.events,
            self.run_dir,
            per_token,
            peak,
            self.attention,
            self.log_metrics(),
            self.eval_names(),
            precision=self.precision.name,
        )

    def log_metrics(self) -> dict[str, str]:
        """Trainer log keys → the log events' names for them: what a task charts beside the loss."""
        return {key: key for key in TRAINER_METRICS}

    def eval_names(self) -> dict[str, str]:
        """Eval log keys → eval events' names, where a task keeps a name other than the key less its eval_."""
        return {}

    def head_share(self) -> float:
        """The share of tokens whose logits the step computes: all of them, unless a recipe keeps fewer."""
        return 1.0

    def build_trainer(self) -> Trainer:
        return Trainer(
            model=self.model,
            args=self._training_args(),
            train_dataset=self.train_set,
            eval_dataset=self.eval_set or None,
            data_collator=self.collator(),
            compute_metrics=self.compute_metrics(),
        )

    def compile_blocks(self) -> None:
        """torch_compile: compile each decoder block in place, its kernels cached per model and torch version."""
        from backend.training.regional_compile import compile_cache_dir, compile_decoder_blocks

        if self.precision.quantization_bit:
            # Not measured: bitsandbytes' CPU kernels under dynamo, inside qlora's gradient checkpointing.
            line = "torch_compile: not applied to a quantized base (qlora, quantization_bit); it trains uncompiled"
            print(line, flush=True)
            self.events.emit("status", message=line, compiled_blocks=0)
            return
        cache = compile_cache_dir(getattr(self, "model_path", self.config.model))
        count, block = compile_decoder_blocks(self.model, cache, every_block_trains=self.config.method != "freeze")
        if not count:
            line = "torch_compile: no stack of decoder blocks found in this model; it trains uncompiled"
        else:
            line = f"torch_compile: {count} decoder blocks ({block}), one compiled graph for any length; cache {cache}"
        print(line, flush=True)
        self.events.emit("status", message=line, compiled_blocks=count)

    def train(self) -> dict:
        if self.config.torch_compile and self.compiles_blocks:
            self.compile_blocks()
        elif self.config.torch_compile:
            line = f"torch_compile: applied to sft and pt only; task {self.config.task} trains uncompiled"
            print(line, flush=True)
            self.events.emit("status", message=line, compiled_blocks=0)
        self.trainer = self.build_trainer()
        if self.config.loraplus_lr_ratio:
            use_loraplus(self.trainer, self.config.loraplus_lr_ratio)
        if self.config.pissa_init and is_main_rank():
            keep_initial_adapter(self.model, self.run_dir)
        self.trainer.remove_callback(PrinterCallback)  # EventsCallback prints a readable line instead
        self.trainer.add_callback(self._speed_meter())
        if self.config.early_stopping_patience:
            patience = self.config.early_stopping_patience
            self.trainer.add_callback(EarlyStoppingCallback(early_stopping_patience=patience))
        if int(os.environ.get("WORLD_SIZE", 1)) > 1:
            self.trainer.add_callback(RankReport(self.model))
        result = self.trainer.train(resume_from_checkpoint=str(self.resume_from) if self.resume_from else None)
        metrics = {
            "train_loss": finite_or_none(result.training_loss),
            "global_step": result.global_step,
            "train_runtime_s": round(result.metrics.get("train_runtime", 0.0), 2),
            "tokens_seen": self.tokens_seen(),
        }
        if self.config.torch_compile and self.compiles_blocks:
            from backend.training.regional_compile import compile_counters

            metrics["compile"] = compile_counters()
        if metrics["train_runtime_s"] and metrics["tokens_seen"]:
            metrics["tokens_per_s"] = round(metrics["tokens_seen"] / metrics["train_runtime_s"], 1)
        if self.trainer.state.best_model_checkpoint:
            self._mark_best(metrics)
        if self.eval_set:
            metrics.update(self.final_evaluation())
        return metrics

    def tokens_seen(self) -> int:
        return self.trainer.state.num_input_tokens_seen

    def _mark_best(self, metrics: dict) -> None:
        state = self.trainer.state
        path = Path(state.best_model_checkpoint)
        step = int(path.name.rsplit("-", 1)[-1])
        self.best = {"step": step, "path": str(path), "metric": self.config.metric_for_best_model}
        self.best["value"] = finite_or_none(state.best_metric)
        (path / "BEST").write_text(f"best {self.best['metric']}={self.best['value']} at step {step}\n")
        metrics["best_checkpoint"] = self.best
        if state.global_step > step:
            metrics["stopped_early"] = True
        self.events.emit("best", **self.best)
        print(f"best checkpoint: step {step} ({self.best['metric']} {self.best['value']})", flush=True)

    def final_evaluation(self) -> dict:
        """Scores of the final (or best) weights on the validation split."""
        loss = None if self.best else self._eval_loss_at_last_step()
        if loss is None:
            loss = self.trainer.evaluate()["eval_loss"]  # the callback emits the eval event
        return {"eval_loss": finite_or_none(loss)}

    def _eval_loss_at_last_step(self):
        """The Trainer already evaluates at the last step on some schedules; never evaluate twice."""
        state = self.trainer.state
        history = [h for h in state.log_history if "eval_loss" in h and h.get("step") == state.global_step]
        return history[-1]["eval_loss"] if history else None

    def save(self, metrics: dict) -> None:
        """Weights in standard formats, then metrics.json, each written before the end event."""
        self.events.emit("status", message="saving weights")
        if self.config.strategy in SHARDED_STRATEGIES:
            self.trainer.save_model(str(self.run_dir))  # every rank gathers its shard; rank 0 writes
        if not is_main_rank():
            return
        savers = [self.tokenizer.save_pretrained]
        if self.config.pissa_init:
            savers.insert(0, lambda d: save_converted_adapter(self.model, d, self.run_dir))
        elif self.config.strategy not in SHARDED_STRATEGIES:
            savers.insert(0, lambda d: self.model.save_pretrained(d, safe_serialization=True))
        save_staged(self.run_dir, *savers)
        if self.config.pissa_init:
            drop_initial_adapter(self.run_dir)
        write_text_atomically(self.run_dir / METRICS_FILE, json.dumps(metrics, indent=2))


class TRLRecipe(Recipe):
    """What the recipes on TRL's trainers (preference, grpo) share: TRL counts the tokens, and its final
    evaluation scores are read from the log where the last step already evaluated."""

    def train(self) -> dict:
        score_labelled_positions_only()
        return super().train()

    def tokens_seen(self) -> int:
        # TRL's batches hold prompt and answers apart, so the Trainer may count no input tokens; TRL does.
        counted = [h["num_tokens"] for h in self.trainer.state.log_history if "num_tokens" in h]
        return self.trainer.state.num_input_tokens_seen or int(counted[-1] if counted else 0)

    def final_scores(self) -> dict:
        """The validation scores of the final (or best) weights: the last step's, or a new evaluation."""
        state = self.trainer.state
        at_end = [h for h in state.log_history if "eval_loss" in h and h.get("step") == state.global_step]
        return at_end[-1] if at_end and not self.best else self.trainer.evaluate()  # the callback emits it
