"""FLOPs per token as a training step really spends them, checked against torch's own FLOP counter."""

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from transformers import AutoModelForCausalLM

from backend.templates import encode_conversation
from backend.training.batching import padding_free_collator
from backend.training.flops import step_shape, training_flops_per_token
from backend.training.freeze import train_only_layers

CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello there!"}],
    [
        {"role": "user", "content": "Explain tides in one sentence."},
        {"role": "assistant", "content": "Tides rise and fall with the moon's pull."},
    ],
]
# The linear layers' matmuls; attention's own (left out of the count, as usual for MFU) run as other ops.
MATMULS = ("mm", "addmm")


def trained_as(method: str, model_dir):
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    model.config.use_cache = False
    if method == "lora":
        from peft import LoraConfig, get_peft_model

        return get_peft_model(model, LoraConfig(r=8, target_modules="all-linear", task_type="CAUSAL_LM"))
    if method == "freeze":
        train_only_layers(model, 1)
    return model


def counted_matmul_flops(model, batch) -> int:
    with FlopCounterMode(display=False) as counter:
        model(**batch).loss.backward()
    return sum(flops for op, flops in counter.get_flop_counts()["Global"].items() if str(op).split(".")[-1] in MATMULS)


@pytest.mark.parametrize("method", ["full", "lora", "freeze"])
def test_the_count_matches_torchs_flop_counter_for_every_method(tiny_model_dir, tokenizer, method):
    model = trained_as(method, tiny_model_dir)
    features = [encode_conversation(tokenizer, chat, 256) for chat in CHATS]
    batch = padding_free_collator(model)(features)
    tokens = batch["input_ids"].numel()
    head_share = batch["logits_to_keep"].sum().item() / tokens  # the head runs for trained tokens only
    assert 0 < head_share < 0.5

    expected = training_flops_per_token(step_shape(model), head_share) * tokens
    # The count assumes the first layer's q/k/v pass an input gradient down, which autograd skips
    # (nothing below them trains): a fraction of a percent here.
    assert counted_matmul_flops(model, batch) == pytest.approx(expected, rel=0.02)


def test_the_embedding_counts_nothing_and_the_head_only_for_the_tokens_it_scores(tiny_model_dir):
    """The tiny model is almost all embedding, like Gemma 3 270M: counting every weight would overstate MFU."""
    model = trained_as("lora", tiny_model_dir)
    shape = step_shape(model)
    weights = sum(p.numel() for p in model.parameters())
    assert shape.body < 0.05 * weights and shape.head == model.config.vocab_size * model.config.hidden_size
    assert not shape.head_trained and shape.body_trained == 16_384  # the adapter (rank 8) alone
    every_token, trained_only = training_flops_per_token(shape, 1.0), training_flops_per_token(shape, 0.25)
    assert trained_only < 0.5 * every_token
