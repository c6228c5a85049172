"""Held-out prompts of a grpo run, answered and scored by the run's own rewards: mean total and each component.

The same RewardSet as training, so a reward means the same here; greedy answers, so base and tuned
are compared on what each model would say, not on a lucky sample.
"""

from __future__ import annotations

from backend.evaluation.generation import generate_answers
from backend.rewards.scoring import RewardSet, references_of


def reward_scores(model, tokenizer, examples: list[dict], rewards: RewardSet, max_new_tokens: int, progress=None):
    """(metrics, rows): 'reward' and 'reward/<name>' means, and per prompt the answer and its rewards."""
    prompts = [e["messages"] for e in examples]
    answers = generate_answers(model, tokenizer, prompts, max_new_tokens, progress)
    asked = [p[-1]["content"] for p in prompts]
    scores = rewards.score_all(answers, asked, references_of(examples), prompts)
    metrics = {"reward": mean(scores["reward"])}
    metrics.update({f"reward/{name}": mean(scores[name]) for name in rewards.names})
    reference = rewards.settings.answer_column
    rows = []
    for i, (question, answer) in enumerate(zip(asked, answers, strict=True)):
        row = {"prompt": question, "reference": str(examples[i]["references"].get(reference, "")), "prediction": answer}
        rows.append({**row, "reward": round(scores["reward"][i], 4)})
    return metrics, rows


def mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
