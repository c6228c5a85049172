"""Text classification: a classification head on an encoder (default all-MiniLM-L6-v2) or a decoder.

Supports LoRA (the head stays fully trainable) and full fine-tuning, string or integer labels,
and early stopping on eval_loss, accuracy or f1_macro. Final metrics (accuracy, macro
precision/recall/F1, per-class scores, confusion matrix, ROC AUC and ROC curves) go to
metrics.json and an `eval` event. The label order is saved in the model's config.json
(id2label), so plain transformers can load and use the result.
"""

from __future__ import annotations

import dataclasses
import json
import re

import numpy as np
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer, DataCollatorWithPadding

from backend.errors import TuneForgeError
from backend.files import write_text_atomically
from backend.metrics import classification_metrics, roc_curves
from backend.models.sources import resolve_model
from backend.task_metrics import CLASSIFICATION_SCORES
from backend.training.callbacks import finite_or_none
from backend.training.recipe import Recipe

SCALAR_METRICS = CLASSIFICATION_SCORES


def label_order(labels: set[str]) -> list[str]:
    """Integer labels sort numerically (2 before 10), others alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def head_modules(model) -> list[str]:
    """The model's top-level modules outside its pretrained body: the new head (classifier, score, pre_classifier).

    None where the body is not found under its prefix: PEFT's own head names (classifier, score) then apply.
    """
    body = getattr(model, model.base_model_prefix, None)
    if body is None:
        return []
    return [name for name, part in model.named_children() if part is not body and any(True for _ in part.parameters())]


def head_trained_whole(config, head: list[str]):
    """A LoRA config that trains the new head whole (saved with the adapter) and puts no adapter into it."""
    if not head:
        return config
    pattern = "|".join(map(re.escape, head))
    return dataclasses.replace(config, modules_to_save=list(head), exclude_modules=rf"^({pattern})(\..+)?$")


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


class ClassificationRecipe(Recipe):
    # SEQ_CLS makes PEFT keep the new head ("classifier" / "score") fully trainable and saved.
    lora_task_type = "SEQ_CLS"

    def setup(self) -> None:
        cfg = self.config
        splits = self.load_data()
        self.labels = label_order({e["label"] for e in splits.train + splits.validation})
        if len(self.labels) < 2:
            raise TuneForgeError(f"classification needs at least two labels; found only {self.labels!r}")
        self.model_path = resolve_model(cfg.model, lambda msg: self.events.emit("status", message=msg), cfg.task)
        self.events.emit("status", message=f"loading {self.model_path} with a {len(self.labels)}-label head")
        self.tokenizer = AutoTokenizer.from_pretrained(self.model_path, trust_remote_code=cfg.trust_remote_code)
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.train_set = self._encode(splits.train)
        self.eval_set = self._encode(splits.validation)
        model = AutoModelForSequenceClassification.from_pretrained(
            self.model_path,
            num_labels=len(self.labels),
            id2label=dict(enumerate(self.labels)),
            label2id={label: i for i, label in enumerate(self.labels)},
            dtype=torch.float32,
            trust_remote_code=cfg.trust_remote_code,
        )
        model.config.pad_token_id = self.tokenizer.pad_token_id
        self.head = head_modules(model)
        self.model = self._adapt(model)
        print(f"labels: {', '.join(self.labels)}", flush=True)
        self.report_size()

    def _lora_config(self):
        """LoRA on the body; the new head trains whole and gets no adapter of its own.

        Without the exclusion "all-linear" also puts adapters into the head: PEFT then refuses to
        train DistilBERT's pre_classifier whole as well (it matches the head's name "classifier" by
        suffix), and RoBERTa's classifier.dense would carry an adapter inside the copy it trains.
        """
        return head_trained_whole(super()._lora_config(), self.head)

    def _encode(self, examples) -> list[dict]:
        index = {label: i for i, label in enumerate(self.labels)}
        encoded = []
        for example in examples:
            row = self.tokenizer(example["text"], truncation=True, max_length=self.config.cutoff_len)
            encoded.append({**row, "labels": index[example["label"]]})
        return encoded

    def collator(self):
        return DataCollatorWithPadding(self.tokenizer)

    def compute_metrics(self):
        def scores(prediction) -> dict:
            probs = softmax(np.asarray(prediction.predictions))
            result = classification_metrics(prediction.label_ids, probs, self.labels)
            return {k: result[k] for k in SCALAR_METRICS if result[k] is not None}

        return scores

    def save(self, metrics: dict) -> None:
        super().save(metrics)
        # An adapter folder has no config.json to carry id2label; keep the label order beside it.
        write_text_atomically(self.run_dir / "labels.json", json.dumps(self.labels, ensure_ascii=False))

    def final_evaluation(self) -> dict:
        """Full metrics of the final (or best) weights, as metrics.json keys and one `eval` event."""
        prediction = self.trainer.predict(self.eval_set)
        probs = softmax(np.asarray(prediction.predictions))
        result = classification_metrics(prediction.label_ids, probs, self.labels)
        result["roc_curve"] = roc_curves(prediction.label_ids, probs, self.labels)
        result["eval_loss"] = finite_or_none(prediction.metrics.get("test_loss"))
        step = self.trainer.state.global_step
        self.events.emit("eval", step=step, final=True, **{k: result[k] for k in ("eval_loss", *SCALAR_METRICS)})
        print("final: " + " | ".join(f"{k} {result[k]:.4f}" for k in SCALAR_METRICS if result[k] is not None))
        return result
