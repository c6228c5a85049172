"""The reward-model recipe (task rm): score the chosen answer of each pair above the rejected one.

Same shape as every recipe (setup, train, save) and the same events, checkpoints, resume and weights.
What differs:
  - the data: preference pairs in any layout dpo reads (chosen/rejected, LLaMA-Factory's dpo_en_demo,
    OpenAI messages), each answer laid after its prompt with the chat template;
  - the model: the starting model as a sequence classifier with one output (num_labels=1), its new head
    drawn from the run's seed; lora trains an adapter and the head whole, full trains every weight;
  - the trainer: TRL's RewardTrainer (loss -log sigmoid(score(chosen) - score(rejected))).
Log events carry the batch's pairwise accuracy and margin as rewards/accuracies and rewards/margins
(the Train tab's reward chart); eval events and metrics.json carry eval_accuracy and eval_margin on
the held-out pairs. A LoRA run leaves a PEFT adapter holding the trained head (modules_to_save), a
full or freeze run (the last layers and the head) a sequence-classification model: backend.rewards.learned
loads either to score.
"""

from __future__ import annotations

from backend.errors import TuneForgeError
from backend.models.sources import resolve_model
from backend.rewards.learned import base_scorer
from backend.task_metrics import metric_names
from backend.training.classification import head_modules, head_trained_whole
from backend.training.preference import trl_rows
from backend.training.recipe import TRLRecipe

# TRL's log keys → the log events' names, which the preference runs' reward chart draws.
PAIR_METRICS = {"accuracy": "rewards/accuracies", "margin": "rewards/margins"}
EVAL_METRICS = tuple(name for name in metric_names("rm") if name != "eval_loss")


class RewardModelRecipe(TRLRecipe):
    lora_task_type = "SEQ_CLS"  # PEFT then keeps the new head trainable and saves it with the adapter

    def setup(self) -> None:
        cfg = self.config
        splits = self.load_data()
        self.model_path = resolve_model(cfg.model, progress=lambda msg: self.events.emit("status", message=msg))
        self.tokenizer = self.load_chat_tokenizer()
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.train_set = self._dataset(splits.train, "training")
        self.eval_set = self._dataset(splits.validation, "validation") if splits.validation else []
        self.events.emit("status", message=f"loading model with a reward head ({self.precision.describe()})")
        model = base_scorer(
            self.model_path,
            cfg.trust_remote_code,
            seed=cfg.seed,
            dtype=self.precision.load_dtype(cfg.method),
            **self.precision.loading_arguments(),
        )
        model.config.pad_token_id = self.tokenizer.pad_token_id  # the head reads the last token before padding
        self.head = head_modules(model)
        self.model = self._adapt(model)
        self.report_size()

    def _lora_config(self):
        return head_trained_whole(super()._lora_config(), self.head)

    def _prepare(self, model):
        """Freeze tuning keeps the head trainable too: a new head left at its random start would score nothing."""
        model = super()._prepare(model)
        if self.config.method == "freeze":
            for name in head_modules(model):
                getattr(model, name).requires_grad_(True)
        return model

    def _dataset(self, examples: list[dict], split: str):
        """TRL's conversational pairs, without those whose chosen or rejected conversation passes cutoff_len."""
        from datasets import Dataset

        cutoff = self.config.cutoff_len
        rows = [
            {"chosen": r["prompt"] + r["chosen"], "rejected": r["prompt"] + r["rejected"]}
            for r in trl_rows(examples, "rm", 0)
        ]
        kept = [row for row in rows if max(self._tokens(row["chosen"]), self._tokens(row["rejected"])) <= cutoff]
        if not kept:
            raise TuneForgeError(f"no {split} pair fits within cutoff_len={cutoff} tokens; raise cutoff_len")
        if len(kept) < len(rows):
            print(f"{len(rows) - len(kept)} {split} pairs dropped: longer than cutoff_len", flush=True)
        return Dataset.from_list(kept)

    def _tokens(self, conversation: list[dict]) -> int:
        ids = self.tokenizer.apply_chat_template(conversation, tokenize=True, return_dict=True)["input_ids"]
        return len(ids)

    def log_metrics(self) -> dict[str, str]:
        return PAIR_METRICS

    def eval_names(self) -> dict[str, str]:
        return {key: key for key in EVAL_METRICS}

    def _training_args(self):
        from trl import RewardConfig

        options = self._training_options()
        options["include_num_input_tokens_seen"] = "no"  # TRL counts the tokens of both answers itself
        return RewardConfig(**options, max_length=self.config.cutoff_len)

    def build_trainer(self):
        from trl import RewardTrainer

        trainer = RewardTrainer(
            model=self.model,
            args=self._training_args(),
            train_dataset=self.train_set,
            eval_dataset=self.eval_set or None,
            processing_class=self.tokenizer,
        )
        self.model = trainer.model
        return trainer

    def train(self) -> dict:
        metrics = super().train()
        logged = [h for h in self.trainer.state.log_history if "accuracy" in h]
        if logged:
            metrics.update({event: logged[-1][key] for key, event in PAIR_METRICS.items() if key in logged[-1]})
        return metrics

    def final_evaluation(self) -> dict:
        scores = self.final_scores()
        kept = {"eval_loss": scores.get("eval_loss"), **{key: scores.get(key) for key in EVAL_METRICS}}
        return {k: v for k, v in kept.items() if v is not None}
