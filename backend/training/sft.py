"""Supervised fine-tuning (sft) and plain-text pre-training (pt) of a causal LM."""

from __future__ import annotations

from backend.errors import TuneForgeError
from backend.models.sources import load_causal_lm, resolve_model
from backend.templates import IGNORE_INDEX, encode_example
from backend.training.batching import attend_packed_rows, keeps_trained_logits, padding_free_collator
from backend.training.recipe import Recipe
from backend.training.vision import refuse_images_for_text_model


class SftRecipe(Recipe):
    """Supervised fine-tuning of a causal LM on chat data (answers-only loss) or plain text (pt).

    Supports LoRA (PEFT) and full fine-tuning, fp32 on CPU and bf16 where the GPU has it.

    Batches are padding-free, attention runs per packed example, and logits are computed only
    where a token is trained (backend/training/batching.py): the same examples per step and the same
    per-token loss as padded batches, without compute on padding, across examples, or on the
    prompts' language-model head.
    """

    padding_free = True
    compiles_blocks = True

    def setup(self) -> None:
        cfg = self.config
        splits = self.load_data()

        self.model_path = resolve_model(cfg.model, progress=lambda msg: self.events.emit("status", message=msg))
        refuse_images_for_text_model(splits.train + splits.validation, self.model_path, cfg.model)
        self.tokenizer = self.load_chat_tokenizer()
        self.train_set = self._tokenize(splits.train, "training")
        self.eval_set = self._tokenize(splits.validation, "validation") if splits.validation else []

        self.events.emit("status", message=f"loading model ({self.precision.describe()})")
        model = load_causal_lm(
            self.model_path,
            dtype=self.precision.load_dtype(cfg.method),
            trust_remote_code=cfg.trust_remote_code,
            **self.precision.loading_arguments(),
        )
        model.config.use_cache = False
        self.attention, described = attend_packed_rows(model)
        print(f"attention: {described}", flush=True)
        self.model = self._adapt(model)
        self.report_size()

    def _tokenize(self, examples, split: str):
        cutoff = self.config.cutoff_len
        encoded = [encode_example(self.tokenizer, e, cutoff) for e in examples]
        kept = [e for e in encoded if any(label != IGNORE_INDEX for label in e["labels"])]
        if not kept:
            raise TuneForgeError(
                f"no {split} example has an answer within cutoff_len={cutoff} tokens; raise cutoff_len"
            )
        if len(kept) < len(encoded):
            print(f"{len(encoded) - len(kept)} {split} examples dropped: answers start beyond cutoff_len", flush=True)
        return kept

    def collator(self):
        return padding_free_collator(self.model)

    def head_share(self) -> float:
        """Only the trained tokens' logits, where the model keeps just those (padding_free_collator)."""
        if not keeps_trained_logits(self.model):
            return 1.0
        tokens = sum(len(example["input_ids"]) for example in self.train_set)
        trained = sum(label != IGNORE_INDEX for example in self.train_set for label in example["labels"])
        return trained / tokens if tokens else 1.0
