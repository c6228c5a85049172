"""Training batches: padding-free rows, and logits only where tokens are trained, change nothing learned."""

import pytest
import torch
from transformers import AutoModelForCausalLM, DataCollatorForSeq2Seq, DataCollatorWithFlattening

from backend.templates import IGNORE_INDEX, encode_conversation
from backend.training.batching import (
    PER_EXAMPLE,
    TrainedLogitsOnly,
    keeps_trained_logits,
    packed_attention_candidates,
    padding_free_collator,
    per_example_attention,
    takes_example_boundaries,
    use_packed_attention,
)

CHATS = [
    [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}],
    [
        {"role": "user", "content": "Explain tides in two sentences."},
        {"role": "assistant", "content": "Tides rise and fall with the moon's pull. They shape coastlines."},
    ],
    [{"role": "user", "content": "Name three rivers."}, {"role": "assistant", "content": "Nile, Amazon, Danube."}],
]


@pytest.fixture(scope="module")
def model(tiny_model_dir):
    model = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.float32)
    model.config.use_cache = False  # as in training: with a KV cache, transformers does not look for packed rows
    return model


def features(tokenizer):
    return [encode_conversation(tokenizer, chat, 256) for chat in CHATS]


def test_flattened_batch_has_the_same_loss_and_logits_as_the_padded_one(model, tokenizer):
    padded = DataCollatorForSeq2Seq(tokenizer, padding=True, label_pad_token_id=IGNORE_INDEX)(features(tokenizer))
    flat = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)(features(tokenizer))
    lengths = [len(f["input_ids"]) for f in features(tokenizer)]
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


def test_trained_logits_only_give_the_same_loss_and_gradients_as_every_logit(model, tokenizer):
    every = DataCollatorWithFlattening(return_position_ids=True, separator_id=IGNORE_INDEX)(features(tokenizer))
    trimmed = padding_free_collator(model)(features(tokenizer))
    assert keeps_trained_logits(model) and "logits_to_keep" in trimmed
    trained = sum(sum(label != IGNORE_INDEX for label in f["labels"][1:]) for f in features(tokenizer))
    assert trimmed["shift_labels"].numel() == trained < every["input_ids"].numel() / 2  # prompts skipped

    results = []
    for batch in (every, trimmed):
        model.zero_grad()
        out = model(**batch)
        out.loss.backward()
        results.append((out.loss.item(), model.model.layers[0].mlp.down_proj.weight.grad.clone(), out.logits.shape))
    (every_loss, every_grad, every_shape), (trim_loss, trim_grad, trim_shape) = results
    assert trim_loss == pytest.approx(every_loss, rel=1e-5)
    torch.testing.assert_close(trim_grad, every_grad, atol=1e-6, rtol=1e-4)
    assert trim_shape[0] == trained and every_shape[:2] == every["input_ids"].shape  # logits for trained tokens only


def test_a_model_without_logits_to_keep_gets_plain_padding_free_batches():
    class Legacy(torch.nn.Module):
        def forward(self, input_ids, position_ids=None, labels=None):
            return None

    assert not keeps_trained_logits(Legacy())
    assert not isinstance(padding_free_collator(Legacy()), TrainedLogitsOnly)
    assert use_packed_attention(Legacy()) is None and not takes_example_boundaries(Legacy())


def loss_and_grads(model, batch):
    model.zero_grad()
    out = model(**batch)
    out.loss.backward()
    layer = model.model.layers[-1]
    return out.loss.item(), layer.self_attn.q_proj.weight.grad.clone(), layer.mlp.up_proj.weight.grad.clone()


def test_attention_per_example_gives_the_masked_rows_loss_and_gradients(model, tokenizer):
    masked = padding_free_collator(model)(features(tokenizer))
    assert "cu_seq_lens_q" not in masked  # on plain SDPA, the block-diagonal mask keeps the examples apart
    expected = loss_and_grads(model, masked)
    try:
        assert use_packed_attention(model) == PER_EXAMPLE and takes_example_boundaries(model)  # on a CPU: the loop
        per_example = padding_free_collator(model)(features(tokenizer))
        lengths = [len(f["input_ids"]) for f in features(tokenizer)]
        assert per_example["cu_seq_lens_q"].tolist() == [0, *torch.tensor(lengths).cumsum(0).tolist()]
        got = loss_and_grads(model, per_example)
        # Without the boundaries the examples would attend to each other and these would differ.
        assert got[0] == pytest.approx(expected[0], rel=1e-5)
        for grad, reference in zip(got[1:], expected[1:], strict=True):
            torch.testing.assert_close(grad, reference, atol=1e-6, rtol=1e-4)
        crossed = dict(per_example)
        del crossed["cu_seq_lens_q"]  # what per-example attention would compute without them: one causal row
        crossed_grads = loss_and_grads(model, crossed)[1:]
        # A random model's attention is near uniform, so the loss hardly moves; the attention's gradients do.
        assert not torch.allclose(crossed_grads[0], expected[1], atol=1e-6, rtol=1e-2)
    finally:
        model.set_attn_implementation("sdpa")


def test_per_example_attention_in_bf16_on_a_cpu_computes_in_fp32(model):
    """SDPA's bf16 CPU kernels are slower than its fp32 ones: under bf16 autocast it runs in fp32, returns bf16."""
    attention = model.model.layers[0].self_attn
    torch.manual_seed(0)
    query, key, value = (torch.randn(1, heads, 10, 16).bfloat16() for heads in (4, 2, 2))
    bounds = torch.tensor([0, 4, 10], dtype=torch.int32)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got, _ = per_example_attention(attention, query, key, value, None, cu_seq_lens_q=bounds)
    fp32, _ = per_example_attention(attention, query.float(), key.float(), value.float(), None, cu_seq_lens_q=bounds)
    assert got.dtype == torch.bfloat16
    torch.testing.assert_close(got, fp32.bfloat16(), atol=0, rtol=0)  # fp32's answer, rounded once


@pytest.mark.parametrize(
    ("on_cuda", "half", "packages", "expected"),
    [
        (True, True, {"flash_attn"}, ["flash_attention_2", PER_EXAMPLE]),
        (True, True, {"flash_attn", "flash_attn_interface"}, ["flash_attention_3", "flash_attention_2", PER_EXAMPLE]),
        (True, True, {"kernels"}, ["kernels-community/flash-attn", PER_EXAMPLE]),
        (True, True, set(), [PER_EXAMPLE]),  # no kernel installed: the loop
        (True, False, {"flash_attn"}, [PER_EXAMPLE]),  # fp32: the kernels run in bf16/fp16 only
        (False, True, {"flash_attn", "kernels"}, [PER_EXAMPLE]),  # a CPU: the loop is what pays
    ],
)
def test_packed_rows_use_a_variable_length_kernel_on_a_gpu_where_one_is_installed(on_cuda, half, packages, expected):
    assert packed_attention_candidates(on_cuda, half, packages.__contains__) == expected
