"""Evaluation after training: did fine-tuning help, and what did it cost?

Generation (sft/pt runs and the base model): eval loss and perplexity on held-out rows, batch
generation, ROUGE-1/2/L, BLEU and exact match, a prompt/reference/prediction table, a base vs
tuned comparison, and a forgetting check (perplexity on assets/general_text.txt).
Classification: the metrics of metrics.json, or the same metrics on another dataset, and
class probabilities for typed text.
Reward models (task rm): pairwise accuracy and margin on held-out pairs, base (untrained head) against tuned.

Models come from the chat engine, which keeps one loaded at a time.
"""

from __future__ import annotations

import csv
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from backend.config import TrainConfig
from backend.data import DataOptions, ExampleReader, load_splits
from backend.errors import TuneForgeError
from backend.evaluation.generation import generate_answers, sampling_arguments
from backend.evaluation.pair_eval import pair_rows, pair_scores, pairwise_metrics
from backend.evaluation.reward_eval import reward_scores
from backend.metrics import classification_metrics, generation_metrics, perplexity, roc_curves
from backend.models.sources import resolve_model
from backend.paths import ASSETS_DIR
from backend.rewards.scoring import RewardSet
from backend.runs.job_manager import JobManager
from backend.serving.chat import BASE, ChatEngine
from backend.task_metrics import CLASSIFICATION_SCORES
from backend.templates import IGNORE_INDEX, encode_example

GENERAL_TEXT = ASSETS_DIR / "general_text.txt"
Progress = Callable[[int, int, float | None], None]  # (done, total, eta_s)


class Evaluator:
    def __init__(self, jobs: JobManager, chat: ChatEngine):
        self.jobs, self.chat = jobs, chat

    # ---- what to evaluate -------------------------------------------------------------
    def _run_config(self, target: str) -> TrainConfig:
        if target == BASE:
            return TrainConfig()
        status = self.jobs.status(target)
        if status["status"] != "completed":
            raise TuneForgeError(f"run '{target}' is {status['status']}; only completed runs can be evaluated")
        return TrainConfig.from_dict(self.jobs.config(target))

    def base_of(self, run_id: str) -> str:
        model = self._run_config(run_id).model
        return BASE if model == "default" else f"{BASE}:{model}"

    def held_out(self, target: str, dataset: str | None, max_rows: int) -> list[dict]:
        """The given dataset, or the run's own validation split (the demo's for the base model)."""
        config = self._run_config(target)
        options = DataOptions.from_config(config, self.jobs.workspace)
        if dataset:
            self.jobs.confinement.dataset(dataset, config.dataset_dir, "evaluation dataset")
            options.dataset, options.eval_dataset = dataset, ""
            examples = list(ExampleReader(dataset, options))
        else:
            examples = load_splits(options).validation
            if not examples:
                raise TuneForgeError("this run has no validation split (val_size 0); choose a dataset to evaluate on")
        return examples[:max_rows] if max_rows else examples

    # ---- generation -------------------------------------------------------------------
    def _score(
        self, model_target: str, examples, max_new_tokens, temperature, progress=None, config: TrainConfig | None = None
    ) -> dict[str, Any]:
        """config: the run whose held-out rows these are; a grpo run's are prompts, scored by its rewards."""
        if config is not None and config.task == "grpo":
            with self.chat.model_for(model_target) as (model, tokenizer):
                metrics, rows = reward_scores(
                    model, tokenizer, examples, RewardSet(config), config.max_completion_length, progress
                )
            return {"metrics": metrics, "rows": rows}
        chats = [e for e in examples if "messages" in e]
        with self.chat.model_for(model_target) as (model, tokenizer):
            images = self.chat.image_processor  # a vision model's, which reads each row's images
            loss = mean_loss(model, tokenizer, examples, images)
            rows = generate_rows(model, tokenizer, chats, max_new_tokens, temperature, progress, processor=images)
        scores = {"eval_loss": loss, "perplexity": perplexity(loss)}
        if any("rejected" in e or "desirable" in e for e in examples):
            with self.chat.model_for(model_target) as (model, tokenizer):
                scores.update(preference_scores(model, tokenizer, examples))
        if rows:
            scores.update(generation_metrics([r["prediction"] for r in rows], [r["reference"] for r in rows]))
        return {"metrics": scores, "rows": rows}

    def evaluate_generation(
        self,
        target: str,
        dataset: str | None = None,
        max_rows: int = 20,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        examples = self.held_out(target, dataset, max_rows)
        scored = self._score(target, examples, max_new_tokens, temperature, progress, self._run_config(target))
        return {"target": target, "rows_evaluated": len(examples), **scored}

    def compare_with_base(
        self,
        run_id: str,
        dataset: str | None = None,
        max_rows: int = 20,
        max_new_tokens: int = 64,
        temperature: float = 0.0,
        progress: Progress | None = None,
    ) -> dict[str, Any]:
        """The run's held-out rows through its base model and through the run, side by side."""
        config = self._run_config(run_id)
        if config.task == "rm":
            return self.compare_reward_model(run_id, dataset, max_rows)
        examples = self.held_out(run_id, dataset, max_rows)
        tuned = self._score(run_id, examples, max_new_tokens, temperature, progress, config)
        base_target = self.base_of(run_id)
        base = self._score(base_target, examples, max_new_tokens, temperature, progress, config)
        table = []
        for key, value in tuned["metrics"].items():
            before = base["metrics"].get(key)
            diff = value - before if value is not None and before is not None else None
            table.append({"metric": key, "base": before, "tuned": value, "difference": diff})
        rows = [{**t, **base_columns(b)} for t, b in zip(tuned["rows"], base["rows"], strict=True)]
        return {"run_id": run_id, "base": base_target, "comparison": table, "rows": rows}

    def forgetting(self, run_id: str) -> dict[str, Any]:
        """Perplexity on general text before and after fine-tuning; a large rise means forgetting."""
        self._writes_text(run_id)
        texts = [{"text": p.strip()} for p in GENERAL_TEXT.read_text(encoding="utf-8").split("\n\n") if p.strip()]
        result = {}
        for name, target in (("base", self.base_of(run_id)), ("tuned", run_id)):
            with self.chat.model_for(target) as (model, tokenizer):
                result[name] = perplexity(mean_loss(model, tokenizer, texts))
        result["change_pct"] = 100 * (result["tuned"] / result["base"] - 1) if result["base"] else None
        return result

    # ---- classification ---------------------------------------------------------------
    def classification_metrics(self, run_id: str, dataset: str | None = None) -> dict[str, Any]:
        config = self._run_config(run_id)
        if config.task != "classification":
            raise TuneForgeError(f"run '{run_id}' is a {config.task} run, not classification")
        if not dataset:
            return json.loads((self.jobs.run_dir(run_id) / "metrics.json").read_text(encoding="utf-8"))
        labels, y_true, probs, _, _ = self._classify_rows(run_id, dataset)
        result = classification_metrics(y_true, probs, labels)
        result["roc_curve"] = roc_curves(y_true, probs, labels)
        return result

    def _classify_rows(self, run_id: str, dataset: str | None):
        """(labels, true label ids, the run's probabilities, tokenizer, rows) for the held-out rows."""
        examples = self.held_out(run_id, dataset, 0)
        with self.chat.model_for(run_id) as (model, tokenizer):
            labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
            probs = class_probabilities(model, tokenizer, [e["text"] for e in examples])
        unknown = sorted({e["label"] for e in examples} - set(labels))
        if unknown:
            raise TuneForgeError(f"labels {', '.join(unknown)} were not in training (known: {', '.join(labels)})")
        return labels, [labels.index(e["label"]) for e in examples], probs, tokenizer, examples

    def compare_classification(self, run_id: str, dataset: str | None = None) -> dict[str, Any]:
        """Scores of the base model (its new head untrained, seeded) and the run on the same held-out rows."""
        config = self._run_config(run_id)
        if config.task != "classification":
            raise TuneForgeError(f"run {run_id} is not a classification run; pick one trained with task classification")
        import torch
        from transformers import AutoModelForSequenceClassification

        labels, y_true, tuned_probs, tokenizer, examples = self._classify_rows(run_id, dataset)
        torch.manual_seed(config.seed)  # the same "before" model every time
        base = AutoModelForSequenceClassification.from_pretrained(
            resolve_model(config.model, task="classification"), num_labels=len(labels)
        ).eval()
        base.config.pad_token_id = tokenizer.pad_token_id
        base_probs = class_probabilities(base, tokenizer, [e["text"] for e in examples])
        before = classification_metrics(y_true, base_probs, labels)
        after = classification_metrics(y_true, tuned_probs, labels)
        table = []
        for key in CLASSIFICATION_SCORES:
            diff = after[key] - before[key] if after[key] is not None and before[key] is not None else None
            table.append({"metric": key, "base": before[key], "tuned": after[key], "difference": diff})
        return {"run_id": run_id, "rows_evaluated": len(y_true), "comparison": table}

    def predict_class(self, run_id: str, text: str) -> dict[str, float]:
        if not isinstance(text, str) or not text.strip():
            raise TuneForgeError("type some text to classify")
        if run_id != BASE and self._run_config(run_id).task != "classification":
            raise TuneForgeError(f"run {run_id} is not a classification run; pick one trained with task classification")
        with self.chat.model_for(run_id) as (model, tokenizer):
            labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
            (probs,) = class_probabilities(model, tokenizer, [text])
        return dict(zip(labels, map(float, probs), strict=True))

    def _writes_text(self, target: str) -> None:
        if target != BASE and not target.startswith(BASE + ":") and self._run_config(target).task == "rm":
            raise TuneForgeError(f"run '{target}' is a reward model: it scores answers and writes none")

    # ---- reward models -----------------------------------------------------------------
    def compare_reward_model(self, run_id: str, dataset: str | None = None, max_rows: int = 0) -> dict[str, Any]:
        """accuracy and margin on held-out pairs: the starting model with the run's untrained head, and the run."""
        from backend.rewards.learned import base_scorer

        config = self._run_config(run_id)
        examples = [e for e in self.held_out(run_id, dataset, max_rows) if "rejected" in e]
        if not examples:
            raise TuneForgeError("no preference pairs to score: choose a dataset of chosen and rejected answers")
        with self.chat.model_for(run_id) as (model, tokenizer):
            tuned = pair_scores(model, tokenizer, examples, config.cutoff_len)
            base_model = base_scorer(config.model, config.trust_remote_code, seed=config.seed).eval()
            base_model.config.pad_token_id = tokenizer.pad_token_id
            base = pair_scores(base_model, tokenizer, examples, config.cutoff_len)
        before, after = pairwise_metrics(*base), pairwise_metrics(*tuned)
        table = []
        for key in ("accuracy", "margin"):
            diff = after[key] - before[key] if after[key] is not None and before[key] is not None else None
            table.append({"metric": key, "base": before[key], "tuned": after[key], "difference": diff})
        rows = pair_rows(examples, tuned, base)
        return {"run_id": run_id, "base": BASE, "rows_evaluated": len(examples), "comparison": table, "rows": rows}

    def reward_model_metrics(self, run_id: str, dataset: str | None = None, max_rows: int = 0) -> dict[str, Any]:
        """What `evaluate` returns for an rm run: accuracy and margin, and the base's beside them."""
        result = self.compare_reward_model(run_id, dataset, max_rows)
        metrics: dict[str, Any] = {"rows_evaluated": result["rows_evaluated"]}
        for row in result["comparison"]:
            metrics[row["metric"]], metrics[f"base_{row['metric']}"] = row["tuned"], row["base"]
        return metrics

    # ---- one API for both -------------------------------------------------------------
    def evaluate(self, run_id: str, dataset: str | None = None, max_rows: int = 20) -> dict[str, Any]:
        """What the `evaluate` API returns: a flat metrics dict for the run."""
        task = self._run_config(run_id).task if run_id != BASE else None
        if task == "classification":
            metrics = self.classification_metrics(run_id, dataset)
            return {k: v for k, v in metrics.items() if k != "roc_curve"}
        if task == "rm":
            return self.reward_model_metrics(run_id, dataset, max_rows)
        return self.evaluate_generation(run_id, dataset, max_rows)["metrics"]

    def batch_predict(self, target: str, prompts_file: str, out_dir: Path, max_new_tokens: int = 128) -> list[Path]:
        """Answers for a file of prompts (any supported format, or one prompt a line in .txt)."""
        self._writes_text(target)
        path = Path(prompts_file)
        options = DataOptions(dataset=str(path), task="pt", workspace=self.jobs.workspace)
        prompts = []
        if path.suffix.lower() == ".txt":
            prompts = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        else:
            try:
                prompts = [e["text"] for e in ExampleReader(str(path), options)]
            except TuneForgeError:
                options.task = "sft"
                prompts = [_prompt_of(e["messages"])[-1]["content"] for e in ExampleReader(str(path), options)]
        if not prompts:
            raise TuneForgeError(f"{path.name}: no prompts found")
        chats = [{"messages": [{"role": "user", "content": p}, {"role": "assistant", "content": ""}]} for p in prompts]
        with self.chat.model_for(target) as (model, tokenizer):
            rows = generate_rows(model, tokenizer, chats, max_new_tokens, 0.0, None, need_reference=False)
        out_dir.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        return write_table(
            [{"prompt": r["prompt"], "prediction": r["prediction"]} for r in rows], out_dir, f"predictions-{stamp}"
        )


def base_columns(row: dict) -> dict:
    """The base model's answer (and its reward, for grpo) beside the tuned model's in a comparison row."""
    kept = {"base_prediction": row["prediction"]}
    if "reward" in row:
        kept["base_reward"] = row["reward"]
    return kept


def _prompt_of(messages: list[dict]) -> list[dict]:
    """The conversation up to (not including) its last assistant answer."""
    last = max(i for i, m in enumerate(messages) if m["role"] == "assistant")
    return messages[:last]


def mean_loss(model, tokenizer, examples: list[dict], processor=None) -> float | None:
    """Token-weighted mean loss over the trained tokens of each example (with its images, given a processor)."""
    import torch

    total, count = 0.0, 0
    with torch.no_grad():
        for example in examples:
            if "label" in example:
                continue
            inputs = _loss_inputs(tokenizer, example, processor)
            n = int((inputs["labels"] != IGNORE_INDEX).sum())
            if n == 0:
                continue
            out = model(**inputs)
            total += float(out.loss) * n
            count += n
    return total / count if count else None


def answer_logprob(model, tokenizer, prompt: list[dict], answer: str, cutoff_len: int = 1024) -> tuple[float, int]:
    """(sum of log-probabilities, token count) of an answer after a prompt, as the chat template lays them out."""
    import torch

    encoded = encode_example(tokenizer, {"messages": [*prompt, {"role": "assistant", "content": answer}]}, cutoff_len)
    labels = torch.tensor([encoded["labels"]])
    with torch.no_grad():
        logits = model(input_ids=torch.tensor([encoded["input_ids"]])).logits
    targets, logits = labels[:, 1:], logits[:, :-1].float()
    trained = targets != IGNORE_INDEX
    picked = torch.log_softmax(logits, dim=-1).gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1)
    return float(picked[trained].sum()), int(trained.sum())


def preference_scores(model, tokenizer, examples: list[dict]) -> dict[str, float]:
    """How often the model prefers the chosen answer: by mean log-probability per token, so length alone
    does not decide. For judged (kto) answers: the gap between good and bad answers' mean log-probability."""
    scores: dict[str, float] = {}
    margins = []
    for example in (e for e in examples if "rejected" in e):
        *prompt, chosen = example["messages"]
        good, bad = (
            answer_logprob(model, tokenizer, prompt, text) for text in (chosen["content"], example["rejected"])
        )
        margins.append(good[0] / max(1, good[1]) - bad[0] / max(1, bad[1]))
    if margins:
        scores["win_rate"] = sum(m > 0 for m in margins) / len(margins)
        scores["logp_margin"] = sum(margins) / len(margins)
    judged: dict[bool, list[float]] = {True: [], False: []}
    for example in (e for e in examples if "desirable" in e):
        *prompt, answer = example["messages"]
        total, count = answer_logprob(model, tokenizer, prompt, answer["content"])
        judged[example["desirable"]].append(total / max(1, count))
    if judged[True] and judged[False]:
        mean = lambda values: sum(values) / len(values)  # noqa: E731
        scores["judged_logp_gap"] = mean(judged[True]) - mean(judged[False])
    return scores


def _loss_inputs(tokenizer, example: dict, processor=None) -> dict:
    import torch

    if processor is not None:
        from backend.data.vision_encoding import VisionCollator, encode_with_images

        return VisionCollator(processor)([encode_with_images(processor, example, 1024)])
    encoded = encode_example(tokenizer, example, 1024)
    return {"input_ids": torch.tensor([encoded["input_ids"]]), "labels": torch.tensor([encoded["labels"]])}


def generate_rows(
    model, tokenizer, chats, max_new_tokens, temperature, progress, need_reference=True, processor=None
) -> list[dict]:
    """Greedy (or sampled) answers to each chat's prompt; with a processor, the prompt's images are shown too."""
    prompts = [_prompt_of(example["messages"]) for example in chats]
    if processor is None:
        answers = generate_answers(model, tokenizer, prompts, max_new_tokens, progress, temperature)
    else:
        answers = _answers_with_images(
            model, tokenizer, processor, chats, prompts, max_new_tokens, temperature, progress
        )
    rows = []
    for example, prompt, answer in zip(chats, prompts, answers, strict=True):
        row = {"prompt": prompt[-1]["content"], "prediction": answer}
        if need_reference:
            row["reference"] = example["messages"][-1]["content"]
        rows.append(row)
    return rows


def _answers_with_images(model, tokenizer, processor, chats, prompts, max_new_tokens, temperature, progress):
    """One chat at a time: each has its own images, which the processor lays out per prompt."""
    import torch

    from backend.data.vision_encoding import prompt_inputs

    answers = []
    began = time.perf_counter()
    sampling = sampling_arguments(temperature)
    for i, (example, prompt) in enumerate(zip(chats, prompts, strict=True), start=1):
        inputs = prompt_inputs(processor, prompt, example.get("images") or [])
        with torch.no_grad():
            out = model.generate(
                **inputs, max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id, **sampling
            )
        answers.append(tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True).strip())
        if progress:
            progress(i, len(chats), (time.perf_counter() - began) / i * (len(chats) - i))
    return answers


def class_probabilities(model, tokenizer, texts: list[str], batch_size: int = 32) -> list[list[float]]:
    import torch

    probs = []
    with torch.no_grad():
        for start in range(0, len(texts), batch_size):
            batch = tokenizer(texts[start : start + batch_size], padding=True, truncation=True, return_tensors="pt")
            probs += torch.softmax(model(**batch).logits, dim=-1).tolist()
    return probs


def write_table(rows: list[dict], out_dir: Path, stem: str) -> list[Path]:
    """The same rows as JSONL and CSV, for download."""
    jsonl, table = out_dir / f"{stem}.jsonl", out_dir / f"{stem}.csv"
    jsonl.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    with open(table, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]) if rows else ["prompt"])
        writer.writeheader()
        writer.writerows(rows)
    return [jsonl, table]
