"""The preference-tuning recipe: DPO, ORPO and KTO through TRL's trainers.

Same shape as every recipe (setup, train, save) and the same events, checkpoints and weights:
a LoRA run leaves a PEFT adapter, a full run a safetensors model. What differs:
  - the data: pairs of a chosen and a rejected answer (dpo, orpo), or answers judged good or bad
    (kto; pairs are split into one good and one bad answer);
  - the trainer: TRL's DPOTrainer, KTOTrainer, or ORPOTrainer (trl.experimental in this TRL);
  - the reference model (dpo, kto): with LoRA it is the base with the adapter switched off, so no
    second copy is loaded; with full fine-tuning a frozen copy of the starting model, or ref_model.
    ORPO needs none.
The log events carry TRL's rewards/chosen, rewards/rejected, rewards/margins and rewards/accuracies
beside the loss, and metrics.json keeps their last values.
Refuses: kto with one example per batch (its KL term compares answers within a batch), and a
ref_model for orpo.
"""

from __future__ import annotations

import os
import random

from backend.capability import ADAPTER_METHODS
from backend.errors import TuneForgeError
from backend.models.sources import load_causal_lm, resolve_model
from backend.task_metrics import metric_names
from backend.training.recipe import TRLRecipe

# The metrics charted beside the loss and kept in metrics.json, as TRL names them.
PREFERENCE_METRICS = tuple(name for name in metric_names("dpo") if name != "eval_loss")  # as TRL logs them


def trl_rows(examples: list[dict], task: str, seed: int) -> list[dict]:
    """Our examples as TRL's conversational rows: prompt + chosen/rejected, or prompt + completion + label."""
    rows = []
    for example in examples:
        *prompt, answer = ({"role": m["role"], "content": m["content"]} for m in example["messages"])
        if "rejected" not in example:
            rows.append({"prompt": prompt, "completion": [answer], "label": example["desirable"]})
        elif task == "kto":
            rejected = {"role": "assistant", "content": example["rejected"]}
            rows += [  # a pair as two judged answers
                {"prompt": prompt, "completion": [answer], "label": True},
                {"prompt": prompt, "completion": [rejected], "label": False},
            ]
        else:
            rejected = {"role": "assistant", "content": example["rejected"]}
            rows.append({"prompt": prompt, "chosen": [answer], "rejected": [rejected]})
    if task == "kto":
        # KTO's batches are taken in order, and a pair's two halves side by side would always meet.
        random.Random(seed).shuffle(rows)
    return rows


class PreferenceRecipe(TRLRecipe):
    def setup(self) -> None:
        cfg = self.config
        if cfg.task == "kto" and cfg.per_device_train_batch_size < 2:
            raise TuneForgeError(
                "kto needs per_device_train_batch_size of 2 or more: it estimates its KL term by pairing "
                "prompts with other examples' answers in the same batch"
            )
        if cfg.task == "orpo" and cfg.ref_model:
            raise TuneForgeError("orpo uses no reference model; clear ref_model")
        splits = self.load_data()
        progress = lambda msg: self.events.emit("status", message=msg)  # noqa: E731
        self.model_path = resolve_model(cfg.model, progress=progress)
        self.tokenizer = self.load_chat_tokenizer()

        self.train_set = self._dataset(splits.train, "training")
        self.eval_set = self._dataset(splits.validation, "validation") if splits.validation else []

        self.events.emit("status", message=f"loading model ({self.precision.describe()})")
        self.model = self._prepare(self._load(self.model_path, self.precision.loading_arguments()))
        self.ref_model = self._reference()

    def _load(self, path, quantization: dict):
        cfg = self.config
        dtype = self.precision.load_dtype(cfg.method)
        return load_causal_lm(path, dtype=dtype, trust_remote_code=cfg.trust_remote_code, **quantization)

    def _dataset(self, examples: list[dict], split: str):
        """TRL's rows for one split, without those whose prompt leaves no room for an answer in cutoff_len."""
        from datasets import Dataset

        cutoff = self.config.cutoff_len
        rows = trl_rows(examples, self.config.task, self.config.seed)
        kept = [row for row in rows if self._prompt_tokens(row["prompt"]) < cutoff]
        if not kept:
            raise TuneForgeError(
                f"no {split} example's prompt fits within cutoff_len={cutoff} tokens; raise cutoff_len"
            )
        if len(kept) < len(rows):
            print(f"{len(rows) - len(kept)} {split} examples dropped: prompts longer than cutoff_len", flush=True)
        return Dataset.from_list(kept)

    def _prompt_tokens(self, prompt: list[dict]) -> int:
        ids = self.tokenizer.apply_chat_template(prompt, add_generation_prompt=True, tokenize=True)
        return len(ids["input_ids"] if hasattr(ids, "keys") else ids)

    def _reference(self):
        """None where the trainer needs no separate copy: orpo, and LoRA without ref_model (adapter off)."""
        cfg = self.config
        if cfg.task == "orpo" or (cfg.method in ADAPTER_METHODS and not cfg.ref_model):
            return None
        path = resolve_model(cfg.ref_model, progress=lambda msg: None) if cfg.ref_model else self.model_path
        self.events.emit("status", message=f"loading the reference model from {path}")
        return self._load(path, {}).eval()

    def _training_args(self):
        cfg = self.config
        options = {**self._training_options(), "beta": cfg.pref_beta, "max_length": cfg.cutoff_len}
        # The Trainer cannot find the tokens in TRL's batches; TRL counts them itself (tokens_seen below).
        options["include_num_input_tokens_seen"] = "no"
        if cfg.task == "dpo":
            from trl import DPOConfig

            return DPOConfig(**options, loss_type=[cfg.pref_loss])
        if cfg.task == "kto":
            from trl import KTOConfig

            return KTOConfig(**options, loss_type=cfg.pref_loss)
        os.environ.setdefault("TRL_EXPERIMENTAL_SILENCE", "1")  # ORPO lives in trl.experimental; we pin TRL
        from trl.experimental.orpo import ORPOConfig

        return ORPOConfig(**options)

    def build_trainer(self):
        cfg = self.config
        common = {
            "model": self.model,
            "args": self._training_args(),
            "train_dataset": self.train_set,
            "eval_dataset": self.eval_set or None,
            "processing_class": self.tokenizer,
            "peft_config": self._lora_config() if cfg.method in ADAPTER_METHODS else None,
        }
        if cfg.task == "dpo":
            from trl import DPOTrainer as trainer_class
        elif cfg.task == "kto":
            from trl import KTOTrainer as trainer_class
        else:
            from trl.experimental.orpo import ORPOTrainer as trainer_class
        if cfg.task != "orpo":
            common["ref_model"] = self.ref_model
        try:
            trainer = trainer_class(**common)
        except ValueError as exc:
            if "target" in str(exc):
                raise self._lora_error(exc) from None
            raise
        self.model = trainer.model  # the PEFT model TRL built, whose adapter save() writes
        self.report_size()
        return trainer

    def train(self) -> dict:
        metrics = super().train()
        logged = [h for h in self.trainer.state.log_history if "rewards/margins" in h]
        if logged:
            metrics.update({key: logged[-1][key] for key in PREFERENCE_METRICS if key in logged[-1]})
        return metrics

    def final_evaluation(self) -> dict:
        scores = self.final_scores()
        kept = {"eval_loss": scores.get("eval_loss")}
        kept.update({f"eval_{key}": scores[f"eval_{key}"] for key in PREFERENCE_METRICS if f"eval_{key}" in scores})
        return kept
