"""A model without a chat template of its own trains with a named fallback, and keeps it for chat and export."""

import json
import shutil

import pytest

from backend.config import TrainConfig, fields
from backend.events import read_events
from backend.models.sources import DEFAULT_GGUF_FILE, embedded_gguf_dir
from backend.models.template_choice import describe_template, model_template, recorded_template
from backend.templates import (
    FALLBACK_TEMPLATES,
    IGNORE_INDEX,
    OWN_TEMPLATE,
    TEMPLATE_NAMES,
    cut_at_turn_end,
    encode_conversation,
    ensure_chat_template,
    render,
    tool_template_problem,
)
from tests.helpers import CONVERSATION, DATA, run_cli_in_process, write_config

# What each format puts before an answer, so a chat's prompt ends where the model starts writing.
ANSWER_OPENS = {
    "chatml": "<|im_start|>assistant\n",
    "llama2": " [/INST]",
    "mistral": " [/INST]",
    "gemma": "<start_of_turn>model\n",
    "llama3": "<|start_header_id|>assistant<|end_header_id|>\n\n",
    "phi3": "<|assistant|>\n",
    "alpaca": "### Response:\n",
}


@pytest.fixture(scope="module")
def bare_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model as a base model ships: a tokenizer without any chat template."""
    folder = tmp_path_factory.mktemp("base") / "tiny-base"
    shutil.copytree(tiny_model_dir, folder, ignore=shutil.ignore_patterns("chat_template.*"))
    config_path = folder / "tokenizer_config.json"
    config = json.loads(config_path.read_text(encoding="utf-8"))
    config.pop("chat_template", None)
    config_path.write_text(json.dumps(config), encoding="utf-8")
    return folder


@pytest.fixture(scope="module")
def bare_tokenizer(bare_model_dir):
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(bare_model_dir)
    assert not tokenizer.chat_template
    return tokenizer


def with_fallback(tokenizer, name):
    tokenizer.chat_template = None
    ensure_chat_template(tokenizer, name)
    return tokenizer


def test_the_template_option_offers_every_fallback_on_the_model_tab():
    (option,) = [f for f in fields() if f.name == "template"]
    assert option.metadata["choices"] == TEMPLATE_NAMES
    assert option.metadata["group"] == "model"
    assert {"chatml", "llama2", "alpaca", "gemma", "llama3", "mistral", "phi3"} <= set(TEMPLATE_NAMES)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_fallback_renders_a_chat_that_ends_where_the_answer_starts(bare_tokenizer, name):
    tokenizer = with_fallback(bare_tokenizer, name)
    prompt = render(tokenizer, CONVERSATION[:4], add_generation_prompt=True)
    assert prompt.endswith(ANSWER_OPENS[name])
    assert all(m["content"] in prompt for m in CONVERSATION[:4])  # the system text too, merged or not
    assert "Forge." not in prompt.removesuffix(ANSWER_OPENS[name]).rsplit("Your name?", 1)[1]


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_fallback_renders_each_earlier_part_of_a_chat_as_its_prefix(bare_tokenizer, name):
    """The property prompt masking rests on (answer_spans); then only the answers are trained."""
    tokenizer = with_fallback(bare_tokenizer, name)
    whole = render(tokenizer, CONVERSATION)
    for end in range(1, len(CONVERSATION) + 1):
        assert whole.startswith(render(tokenizer, CONVERSATION[:end]))
        if end < len(CONVERSATION) and CONVERSATION[end]["role"] == "assistant":
            assert whole.startswith(render(tokenizer, CONVERSATION[:end], add_generation_prompt=True))
    encoded = encode_conversation(tokenizer, CONVERSATION, cutoff_len=512)
    pairs = zip(encoded["input_ids"], encoded["labels"], strict=True)
    trained = tokenizer.decode([token for token, label in pairs if label != IGNORE_INDEX])
    assert trained.strip().startswith("Hello! I am Forge.") and "Forge." in trained.split("Hello! I am Forge.")[1]
    assert "Hi there" not in trained and "Your name?" not in trained
    assert tokenizer.eos_token in trained  # every answer ends in eos, so generation learns to stop


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_no_fallback_claims_tool_calling(bare_tokenizer, name):
    assert "has no tool calling" in tool_template_problem(with_fallback(bare_tokenizer, name))


def test_a_reply_ends_at_an_end_of_turn_marker_the_tokenizer_knows_only_as_text():
    assert cut_at_turn_end("Forge.<end_of_turn>\n<start_of_turn>user\nmore") == ("Forge.", True)
    assert cut_at_turn_end("Forge. <|eot_id|>") == ("Forge. ", True)
    assert cut_at_turn_end("Still writing <end_of") == ("Still writing <end_of", False)


def test_the_model_tab_says_whose_template_a_model_trains_with(tiny_model_dir, bare_model_dir):
    assert model_template(str(tiny_model_dir), "gemma") == OWN_TEMPLATE
    assert describe_template(OWN_TEMPLATE, "gemma") == "the model's own chat template"
    assert model_template(str(bare_model_dir), "gemma") == "gemma"
    assert describe_template("gemma", "gemma") == "the gemma fallback (the model has no chat template of its own)"
    assert model_template("nobody/not-downloaded", "llama3") is None  # a hub id not in the cache: not guessed
    embedded = embedded_gguf_dir() / DEFAULT_GGUF_FILE  # a .gguf keeps its template in its metadata
    assert model_template(str(embedded), "gemma") == OWN_TEMPLATE


def test_a_base_model_trains_chats_and_exports_with_the_chosen_fallback(tmp_path, bare_model_dir):
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.serving.export import Exporter

    workspace = tmp_path / "workspace"
    run_dir = workspace / "runs" / "base-gemma"
    options = {"model": str(bare_model_dir), "dataset": str(DATA / "sharegpt.json"), "template": "gemma"}
    options.update(max_steps=1, val_size=0, output_dir=str(run_dir))
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", **options))
    assert result.returncode == 0, result.stderr[-2000:]

    assert recorded_template(run_dir / "config.yaml") == "gemma"
    assert TrainConfig.from_yaml(run_dir / "config.yaml").template == "gemma"  # the record is no option: a comment
    assert [e["chat_template"] for e in read_events(run_dir) if "chat_template" in e] == ["gemma"]
    assert (run_dir / "chat_template.jinja").read_text(encoding="utf-8") == FALLBACK_TEMPLATES["gemma"]

    jobs = JobManager(workspace)
    try:
        chat = ChatEngine(jobs)
        with chat.model_for("base-gemma") as (_model, tokenizer):
            prompt = render(tokenizer, [{"role": "user", "content": "Hi"}], add_generation_prompt=True)
        assert prompt.endswith("<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n")
        assert "<end_of_turn>" not in chat.reply("base-gemma", "Hi", temperature=0, max_new_tokens=4)
        exported = Exporter(jobs).export("base-gemma", "adapter")
        assert (exported / "chat_template.jinja").read_text(encoding="utf-8") == FALLBACK_TEMPLATES["gemma"]
    finally:
        jobs.shutdown()


def test_llamafactory_template_names_pick_the_same_fallback():
    from backend.llamafactory import load_config_file

    names = {"gemma": "gemma", "llama3": "llama3", "mistral": "mistral", "phi": "phi3", "qwen": "chatml"}
    for theirs, ours in names.items():
        assert load_config_file(f"stage: sft\ntemplate: {theirs}\n")["template"] == ours
