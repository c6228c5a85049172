"""The Evaluate tab's answers come eight prompts at a time, and say what one prompt at a time would say."""

import pytest
import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from backend.evaluation.generation import generate_answers

QUESTIONS = ["Hi", "What is the capital of France, and why is it there?", "2 + 2 = ?", "Name three rivers."] * 3


@pytest.mark.slow
def test_ten_prompts_of_different_lengths_take_two_calls_and_match_one_at_a_time(default_model_dir):
    """The real SmolLM2 (about 5 s): a tiny random model answers every prompt with the same blank line, so
    equal answers would not show that each row continued its own prompt."""
    tokenizer = AutoTokenizer.from_pretrained(default_model_dir)
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    prompts = [[{"role": "user", "content": q}] for q in QUESTIONS[:10]]
    calls, generate = [], model.generate
    model.generate = lambda **kw: calls.append(kw["input_ids"].shape[0]) or generate(**kw)
    seen = []
    batched = generate_answers(model, tokenizer, prompts, 4, progress=lambda *a: seen.append(a[:2]))
    assert calls == [8, 2] and seen == [(8, 10), (10, 10)]
    assert tokenizer.padding_side == AutoTokenizer.from_pretrained(default_model_dir).padding_side  # put back
    calls.clear()
    assert generate_answers(model, tokenizer, prompts, 4, batch_size=1) == batched and calls == [1] * 10
    assert len(set(batched)) > 1  # answers of their own prompts, not one row's answer repeated

    tokenizer.pad_token = None  # no padding token: prompts of different lengths cannot share a batch
    calls.clear()
    assert generate_answers(model, tokenizer, prompts[:2], 4) == batched[:2] and calls == [1, 1]
