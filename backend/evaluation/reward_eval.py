"""Held-out prompts of a grpo run, answered and scored by the run's own rewards: mean total and each component.

The same RewardSet as training, so a reward means the same here; greedy answers, so base and tuned
are compared on what each model would say, not on a lucky sample.
"""

from __future__ import annotations

import time
from collections.abc import Callable

from backend.rewards.scoring import RewardSet, references_of

BATCH = 8


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


def generate_answers(model, tokenizer, prompts: list[list[dict]], max_new_tokens: int, progress: Callable | None):
    import torch

    side, tokenizer.padding_side = tokenizer.padding_side, "left"  # generation continues every row at its end
    answers: list[str] = []
    began = time.perf_counter()
    try:
        for start in range(0, len(prompts), BATCH):
            batch = prompts[start : start + BATCH]
            inputs = tokenizer.apply_chat_template(
                batch, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
            )
            with torch.no_grad():
                out = model.generate(
                    **inputs, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id
                )
            new = out[:, inputs["input_ids"].shape[1] :]
            answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
            if progress:
                done = len(answers)
                progress(done, len(prompts), (time.perf_counter() - began) / done * (len(prompts) - done))
    finally:
        tokenizer.padding_side = side
    return answers


def mean(values: list) -> float | None:
    kept = [v for v in values if v is not None]
    return sum(kept) / len(kept) if kept else None
