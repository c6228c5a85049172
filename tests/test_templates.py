"""Chat data trains on the answers only: prompt tokens are masked with the model's own template."""

from backend.templates import FALLBACK_TEMPLATES, IGNORE_INDEX, encode_conversation, ensure_chat_template
from tests.helpers import CONVERSATION


def trained_text(tokenizer, encoded):
    return tokenizer.decode(
        [t for t, label in zip(encoded["input_ids"], encoded["labels"], strict=True) if label != IGNORE_INDEX]
    )


def test_only_assistant_turns_and_their_end_markers_are_trained(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION, cutoff_len=512)
    assert len(encoded["input_ids"]) == len(encoded["labels"]) == len(encoded["attention_mask"])
    assert trained_text(tokenizer, encoded) == "Hello! I am Forge.<|im_end|>\nForge.<|im_end|>\n"
    full = tokenizer.decode(encoded["input_ids"])
    assert "<|im_start|>user\nHi there" in full and "Be brief." in full  # the model's own template


def test_cutoff_len_truncates_ids_and_labels_together(tokenizer):
    encoded = encode_conversation(tokenizer, CONVERSATION, cutoff_len=20)
    assert len(encoded["input_ids"]) == len(encoded["labels"]) == 20


def test_model_without_chat_template_gets_the_documented_fallback(default_model_dir):
    from transformers import AutoTokenizer

    bare = AutoTokenizer.from_pretrained(default_model_dir)
    bare.chat_template = None
    ensure_chat_template(bare, "alpaca")
    assert bare.chat_template == FALLBACK_TEMPLATES["alpaca"]
    encoded = encode_conversation(bare, CONVERSATION[1:3], cutoff_len=512)
    assert bare.decode(encoded["input_ids"]).startswith("### Instruction:\nHi there")
    assert trained_text(bare, encoded).startswith("Hello! I am Forge.")
