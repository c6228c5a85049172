"""Answers to chat prompts, generated a batch at a time: the Evaluate tab's rows, batch predict, a judge's
answers and a grpo run's held-out prompts.

One prompt at a time, a CPU spends each new token's step on a single row; eight rows share the step for
little more (measured in docs/benchmarks.md). Prompts are padded on the left, so each row continues at its end.
"""

from __future__ import annotations

import time
from collections.abc import Callable

BATCH = 8


def generate_answers(
    model,
    tokenizer,
    prompts: list[list[dict]],
    max_new_tokens: int,
    progress: Callable | None = None,
    temperature: float = 0.0,
    batch_size: int = BATCH,
) -> list[str]:
    """Each chat's answer: greedy, or sampled at temperature. progress(done, total, seconds left) after each batch.

    A tokenizer without a padding token cannot batch prompts of different lengths: it answers one at a time.
    """
    import torch

    if tokenizer.pad_token_id is None:
        batch_size = 1
    side, tokenizer.padding_side = tokenizer.padding_side, "left"
    answers: list[str] = []
    began = time.perf_counter()
    try:
        for start in range(0, len(prompts), batch_size):
            inputs = tokenizer.apply_chat_template(
                prompts[start : start + batch_size],
                add_generation_prompt=True,
                return_tensors="pt",
                return_dict=True,
                padding=batch_size > 1,
            )
            with torch.no_grad():
                out = model.generate(
                    **inputs,
                    max_new_tokens=max_new_tokens,
                    pad_token_id=tokenizer.pad_token_id,
                    **sampling_arguments(temperature),
                )
            new = out[:, inputs["input_ids"].shape[1] :]
            answers += [text.strip() for text in tokenizer.batch_decode(new, skip_special_tokens=True)]
            if progress:
                done = len(answers)
                progress(done, len(prompts), (time.perf_counter() - began) / done * (len(prompts) - done))
    finally:
        tokenizer.padding_side = side
    return answers


def sampling_arguments(temperature: float) -> dict:
    """generate()'s arguments for greedy decoding (temperature 0) or sampling at temperature."""
    return {"do_sample": True, "temperature": temperature} if temperature > 0 else {"do_sample": False}
