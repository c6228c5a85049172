"""Generation's prefill hands the LM head a packed input (backend.models.head_input): the strided view of the
prompts' last positions sends torch's CPU linear down a path ~100 times slower in bf16 (bench/head_input.py)."""

import torch

from backend.models.head_input import MARK, packed_strides, read_contiguous_head_input
from backend.models.sources import load_causal_lm


def head_inputs(model) -> list[tuple[tuple[int, ...], tuple[int, ...]]]:
    """The (shape, strides) of every input the head's own forward receives from now on: a pre-hook registered
    after any other sees what the others hand on."""
    seen = []
    model.get_output_embeddings().register_forward_pre_hook(
        lambda module, args: seen.append((tuple(args[0].shape), args[0].stride()))
    )
    return seen


def greedy(model, ids, mask):
    return model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=4, do_sample=False, pad_token_id=0)


def test_a_loaded_models_prefill_reaches_its_head_packed_with_the_same_tokens(tiny_model_dir):
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    ids = torch.randint(3, 300, (3, 9))
    mask = torch.ones_like(ids)
    mask[1, :4] = 0  # a shorter prompt, left-padded as a batch is for generation

    plain = AutoModelForCausalLM.from_pretrained(tiny_model_dir, dtype=torch.bfloat16)
    plain_seen = head_inputs(plain)
    expected = greedy(plain, ids, mask)
    width = plain.config.hidden_size
    # What transformers hands the head without us: the last position sliced out of the whole prompt's states.
    assert plain_seen[0] == ((3, 1, width), (9 * width, width, 1))

    loaded = load_causal_lm(str(tiny_model_dir), dtype=torch.bfloat16)
    seen = head_inputs(loaded)
    assert torch.equal(greedy(loaded, ids, mask), expected)
    assert len(seen) == 4 and all(strides == packed_strides(shape) for shape, strides in seen), seen


def test_the_hook_is_added_once_and_leaves_a_packed_input_alone(tiny_model_dir):
    model = load_causal_lm(str(tiny_model_dir), dtype=torch.float32)
    head = model.get_output_embeddings()
    assert getattr(head, MARK) and len(head._forward_pre_hooks) == 1
    assert read_contiguous_head_input(model) is model and len(head._forward_pre_hooks) == 1

    packed = torch.randn(2, 5, model.config.hidden_size)
    hook = next(iter(head._forward_pre_hooks.values()))
    assert hook(head, (packed,)) is None  # nothing copied
    one_prompt = torch.randn(1, 7, model.config.hidden_size)[:, -1:]
    assert one_prompt.is_contiguous()  # torch's own test passes it, and the slow path still took it
    (copied,) = hook(head, (one_prompt,))
    assert copied.stride() == packed_strides(copied.shape) and torch.equal(copied, one_prompt)
    assert packed_strides((3, 1, 4)) == (4, 4, 1) and packed_strides(()) == ()
