"""Padding-free batches train exactly what padded batches train, without computing on padding."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq

from backend.config import TrainConfig
from backend.events import EventLog
from backend.recipe import SftRecipe
from backend.templates import IGNORE_INDEX, encode_conversation

CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "user", "content": "Explain tides in two sentences."},
        {"role": "assistant", "content": "Tides rise and fall with the moon's pull. They shape coastlines."},
    ],
    [{"role": "user", "content": "Name three rivers."}, {"role": "assistant", "content": "Nile, Amazon, Danube."}],
]


@pytest.fixture(scope="module")
def model(default_model_dir):
    model = AutoModelForCausalLM.from_pretrained(default_model_dir, dtype=torch.float32).eval()
    model.config.use_cache = False  # as in training: with a KV cache, transformers does not look for packed rows
    return model


def test_flattened_batch_has_the_same_loss_and_logits_as_the_padded_one(model, tokenizer, tmp_path):
    features = [encode_conversation(tokenizer, chat, 256) for chat in CHATS]
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(
        [dict(f) for f in features]
    )
    recipe = SftRecipe(TrainConfig(), EventLog(tmp_path), tmp_path)
    recipe.tokenizer = tokenizer
    flat = recipe.collator()([dict(f) for f in features])

    lengths = [len(f["input_ids"]) for f in features]
    assert flat["input_ids"].shape == (1, sum(lengths))  # not one padding token
    assert padded["input_ids"].numel() == len(lengths) * max(lengths)
    with torch.no_grad():
        padded_out = model(**padded)
        flat_out = model(**flat)
    assert flat_out.loss.item() == pytest.approx(padded_out.loss.item(), rel=1e-4)
    # Each example sees only itself: its logits match the padded row's, token for token.
    start = 0
    for row, n in enumerate(lengths):
        torch.testing.assert_close(flat_out.logits[0, start : start + n], padded_out.logits[row, :n], atol=2e-4, rtol=0)
        start += n
