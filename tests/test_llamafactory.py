"""Coming from LLaMA-Factory: its data folder, training YAMLs and adapters work here as they are.

Read from LLaMA-Factory's own demo files in ../shared/data/llamafactory (never copied into the
repo); every test that needs them skips, saying why, when that folder is absent.
"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import yaml

from backend.data import DataOptions, ExampleReader, labelled_choices, open_dataset
from backend.data.report import inspect_dataset
from backend.errors import TuneForgeError
from backend.events import read_events
from backend.llamafactory import load_config, load_config_file
from backend.models.sources import adapter_base_model, resolve_model
from backend.templates import IGNORE_INDEX, encode_example
from tests.helpers import DATA, LLAMAFACTORY_DATA, pick, run_cli_in_process

needs_llamafactory = pytest.mark.skipif(
    not LLAMAFACTORY_DATA.is_dir(),
    reason=f"{LLAMAFACTORY_DATA} is absent: LLaMA-Factory's demo data ships beside the repo in CI, not in clones",
)
MULTIMODAL = "video and audio are not supported"
MISSING = r"its file_name \S+ is missing from"
# Every entry of the shared dataset_info.json that names a file: (task, rows it loads, or why it is refused).
FILE_ENTRIES = {
    "identity": ("sft", 91),
    "alpaca_en_demo": ("sft", 999),
    "glaive_toolcall_en_demo": ("sft", 300),
    "c4_demo": ("pt", 300),
    "alpaca_zh_demo": ("sft", MISSING),
    "glaive_toolcall_zh_demo": ("sft", MISSING),
    "wiki_demo": ("pt", MISSING),
    "mllm_demo": ("sft", 6),
    "mllm_audio_demo": ("sft", MULTIMODAL),
    "mllm_video_demo": ("sft", MULTIMODAL),
    "mllm_video_audio_demo": ("sft", MULTIMODAL),
    "dpo_en_demo": ("dpo", 300),
    "dpo_zh_demo": ("dpo", MISSING),
    "kto_en_demo": ("kto", 300),
}
NEW_NAME, NEW_AUTHOR = "Nova", "Acme Labs"
IDENTITY_QUESTIONS = [
    "Who are you?",  # these four are in identity.json
    "What is your name?",
    "Can you introduce yourself?",
    "Tell me about yourself",
    "What should I call you?",  # these four are not
    "Introduce yourself in one sentence.",
    "Who am I talking to?",
    "What's your name, assistant?",
]


def lf_options(dataset: str, **options) -> DataOptions:
    return DataOptions(dataset=dataset, dataset_dir=str(LLAMAFACTORY_DATA), **options)


def write_yaml(path, options: dict):
    path.write_text(yaml.safe_dump(options, sort_keys=False), encoding="utf-8")
    return path


def lf_sft_yaml(output_dir, **overrides) -> dict:
    """LLaMA-Factory's examples/train_lora/qwen3_lora_sft.yaml, made small: LoRA SFT on alpaca_en_demo."""
    return {
        "model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct",
        "trust_remote_code": True,
        "stage": "sft",
        "do_train": True,
        "finetuning_type": "lora",
        "lora_rank": 8,
        "lora_target": "all",
        "dataset": "alpaca_en_demo",
        "dataset_dir": str(LLAMAFACTORY_DATA),
        "template": "qwen",
        "cutoff_len": 256,
        "max_samples": 16,
        "overwrite_cache": True,
        "preprocessing_num_workers": 16,
        "dataloader_num_workers": 4,
        "output_dir": str(output_dir),
        "logging_steps": 1,
        "save_steps": 500,
        "plot_loss": True,
        "overwrite_output_dir": True,
        "save_only_model": False,
        "report_to": "none",
        "per_device_train_batch_size": 2,
        "gradient_accumulation_steps": 1,
        "learning_rate": 1.0e-4,
        "num_train_epochs": 3.0,
        "max_steps": 3,
        "lr_scheduler_type": "cosine",
        "warmup_ratio": 0.1,
        "bf16": True,
        "ddp_timeout": 180000000,
        "resume_from_checkpoint": None,
        **overrides,
    }


# ---- data folders ------------------------------------------------------------------------


@needs_llamafactory
def test_the_table_covers_every_file_entry_of_the_shared_registry():
    info = json.loads((LLAMAFACTORY_DATA / "dataset_info.json").read_text())
    assert {name for name, entry in info.items() if "file_name" in entry} == set(FILE_ENTRIES)


@needs_llamafactory
@pytest.mark.parametrize("name", sorted(FILE_ENTRIES))
def test_every_file_entry_loads_with_its_row_count_or_is_refused_with_a_reason(name):
    task, expected = FILE_ENTRIES[name]
    if isinstance(expected, int):
        result = inspect_dataset(lf_options(name, task=task))
        assert (result.usable_rows, result.rows_read, result.skipped_count) == (expected, expected, 0)
    else:
        with pytest.raises(TuneForgeError, match=expected) as refused:
            inspect_dataset(lf_options(name, task=task))
        assert "\n" not in str(refused.value) and str(refused.value).startswith(f"dataset '{name}'")


@needs_llamafactory
def test_plain_text_entry_says_which_task_it_needs():
    with pytest.raises(TuneForgeError, match="c4_demo.jsonl: format text does not fit task sft"):
        inspect_dataset(lf_options("c4_demo"))


@needs_llamafactory
def test_hub_entries_are_listed_and_refused_offline_in_one_line(workspace):
    labels = dict(labelled_choices(workspace, str(LLAMAFACTORY_DATA)))
    assert labels["alpaca_en (hub, offline)"] == "alpaca_en"
    assert labels["identity"] == "identity" and labels["dpo_en_demo (preference: dpo, orpo, kto, rm)"] == "dpo_en_demo"
    assert labels["deepctrl (not local)"] == "deepctrl"
    from backend.runs.job_manager import JobManager

    jobs = JobManager(workspace)
    offline = r"^dataset 'alpaca_en' is on the Hugging Face Hub \(llamafactory/alpaca_en\) and this machine is offline"
    with pytest.raises(TuneForgeError, match=offline):
        jobs.start({"dataset": "alpaca_en", "dataset_dir": str(LLAMAFACTORY_DATA)})
    with pytest.raises(TuneForgeError, match="comes from the ModelScope hub"):
        jobs.start({"dataset": "deepctrl", "dataset_dir": str(LLAMAFACTORY_DATA)})
    assert jobs.list_runs() == []


@needs_llamafactory
def test_hub_entries_keep_their_subset_split_and_folder_for_when_online(monkeypatch):
    from backend.data.registry import resolve

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    code = resolve("starcoder_python", None, str(LLAMAFACTORY_DATA))  # resolving reads no network
    assert (code.hub, code.hub_folder, code.hub_split, code.columns) == (
        "bigcode/starcoderdata",
        "python",
        "train",
        {"prompt": "content"},
    )
    adgen = resolve("adgen_eval", None, str(LLAMAFACTORY_DATA))
    assert (adgen.hub, adgen.hub_split) == ("HasturOfficial/adgen", "validation")


def test_entry_fields_are_honoured_folder_columns_tags_and_formatting(tmp_path):
    folder = tmp_path / "data"
    (folder / "parts").mkdir(parents=True)
    (folder / "parts" / "a.jsonl").write_text(json.dumps({"q": "Hi", "ctx": "", "a": "Hello", "sys": "Be brief."}))
    (folder / "parts" / "b.json").write_text(json.dumps([{"q": "Sum", "ctx": "2+2", "a": "4", "sys": ""}]))
    chat = [
        {"role": "system", "content": "You are terse."},
        {"role": "user", "content": "Ping"},
        {"role": "assistant", "content": "Pong"},
    ]
    (folder / "chat.json").write_text(json.dumps([{"messages": chat}]))
    info = {
        "qa": {"file_name": "parts", "columns": {"prompt": "q", "query": "ctx", "response": "a", "system": "sys"}},
        "chat": {
            "file_name": "chat.json",
            "formatting": "sharegpt",
            "columns": {"messages": "messages"},
            "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant"},
        },
        "bad_tags": {"file_name": "chat.json", "formatting": "sharegpt", "tags": {"speaker_tag": "who"}},
    }
    (folder / "dataset_info.json").write_text(json.dumps(info))
    options = DataOptions(dataset="qa", dataset_dir=str(folder))
    first, second = list(open_dataset("qa", options))
    assert first["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello"},
    ]
    assert second["messages"][0] == {"role": "user", "content": "Sum\n\n2+2"}
    (example,) = list(open_dataset("chat", options))
    assert example["messages"] == chat
    with pytest.raises(TuneForgeError, match="unknown tag 'speaker_tag'"):
        open_dataset("bad_tags", options)


@needs_llamafactory
def test_several_datasets_are_read_one_after_another():
    reader = open_dataset("identity,alpaca_en_demo", lf_options("identity,alpaca_en_demo"))
    assert len(list(reader)) == 91 + 999
    assert reader.name == "identity.json + alpaca_en_demo.json" and reader.format == "alpaca"


@needs_llamafactory
def test_identity_placeholders_are_reported_until_filled():
    unfilled = inspect_dataset(lf_options("identity"))
    assert unfilled.placeholders == {"name": 77, "author": 60}  # as many as grep finds in the file
    assert any(
        "{{author}} and {{name}} placeholders left as they are; set identity_author and identity_name" in line
        for line in unfilled.summary_lines()
    )
    placeholders = {"name": NEW_NAME, "author": NEW_AUTHOR}
    filled = list(ExampleReader("identity", lf_options("identity", placeholders=placeholders)))
    answers = [m["content"] for e in filled for m in e["messages"] if m["role"] == "assistant"]
    assert not any("{{" in a for a in answers)
    assert answers[2] == f"I am {NEW_NAME}, an AI assistant developed by {NEW_AUTHOR}. How can I assist you today?"
    report = inspect_dataset(lf_options("identity", placeholders=placeholders))
    assert not any("placeholders left" in line for line in report.summary_lines())


# ---- tool calls --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def tool_model_dir(tmp_path_factory, tiny_model_dir):
    """The tiny model with a chat template that renders tools, calls and results (in Qwen2.5's style)."""
    folder = tmp_path_factory.mktemp("models") / "tiny-tools"
    folder.mkdir()
    for path in tiny_model_dir.iterdir():
        if path.name != "chat_template.jinja":
            (folder / path.name).symlink_to(path)
    shutil.copyfile(DATA / "tool_chat_template.jinja", folder / "chat_template.jinja")
    return folder


@needs_llamafactory
def test_tool_call_turns_become_tool_calls_and_tool_results():
    example = next(iter(open_dataset("glaive_toolcall_en_demo", lf_options("glaive_toolcall_en_demo"))))
    roles = [m["role"] for m in example["messages"]]
    assert roles == ["user", "assistant", "user", "assistant", "tool", "assistant", "user", "assistant"]
    call, result = example["messages"][3:5]
    assert call["tool_calls"] == [
        {
            "id": "call00040",
            "type": "function",
            "function": {"name": "search_recipes", "arguments": {"ingredients": ["chicken", "bell peppers", "rice"]}},
        }
    ]
    assert (result["tool_call_id"], result["name"]) == ("call00040", "search_recipes")
    assert result["content"].startswith('{"recipes": [{"name": "Chicken and Bell Pepper Stir Fry"')
    assert example["tools"][0]["type"] == "function" and example["tools"][0]["function"]["name"] == "search_recipes"


@needs_llamafactory
def test_tool_calls_are_trained_with_a_tool_calling_template(tool_model_dir, tmp_path):
    from backend.models.sources import load_tokenizer

    tokenizer = load_tokenizer(str(tool_model_dir))
    example = next(iter(open_dataset("glaive_toolcall_en_demo", lf_options("glaive_toolcall_en_demo"))))
    encoded = encode_example(tokenizer, example, 4096)
    text = tokenizer.decode(encoded["input_ids"])
    pairs = zip(encoded["input_ids"], encoded["labels"], strict=True)
    trained = tokenizer.decode([token for token, label in pairs if label != IGNORE_INDEX])
    assert '"name": "search_recipes"' in text.split("</tools>")[0]  # the tools list, in the system prompt
    assert '<tool_call>\n{"name": "search_recipes", "arguments": {"ingredients"' in trained  # the call is learned
    assert "<tool_response>" in text and "<tool_response>" not in trained  # the result is context, not learned

    run_dir = tmp_path / "run"
    config = {
        "model": str(tool_model_dir),
        "dataset": "glaive_toolcall_en_demo",
        "dataset_dir": str(LLAMAFACTORY_DATA),
        "output_dir": str(run_dir),
        "max_samples": 4,
        "max_steps": 2,
        "val_size": 0,
        "cutoff_len": 256,
    }
    result = run_cli_in_process(write_yaml(tmp_path / "run.yaml", config))
    assert result.returncode == 0, result.stderr[-2000:]
    assert [e["step"] for e in read_events(run_dir) if e["type"] == "log"] == [1, 2]


@needs_llamafactory
def test_tool_calls_are_refused_for_a_model_without_tool_calling(tmp_path):
    run_dir = tmp_path / "run"
    config = {"dataset": "glaive_toolcall_en_demo", "dataset_dir": str(LLAMAFACTORY_DATA), "output_dir": str(run_dir)}
    result = run_cli_in_process(write_yaml(tmp_path / "run.yaml", config | {"max_steps": 1}))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    message = result.stderr.strip().splitlines()[-1]
    assert message.startswith("error: this dataset has tool calls (function_call/observation turns or a tools column)")
    assert "SmolLM2-135M-Instruct's chat template has no tool calling: it drops the tools list and tool calls;" in (
        message
    )
    assert read_events(run_dir)[-1]["status"] == "failed"
    assert not (run_dir / "adapter_model.safetensors").exists()


# ---- training YAMLs -----------------------------------------------------------------------


@pytest.fixture(scope="module")
def lf_run(tmp_path_factory, tiny_model):
    if not LLAMAFACTORY_DATA.is_dir():
        pytest.skip(f"{LLAMAFACTORY_DATA} is absent")
    folder = tmp_path_factory.mktemp("lf")
    run_dir = folder / "saves" / "smollm2" / "lora" / "sft"
    yaml_options = lf_sft_yaml(run_dir, model_name_or_path=tiny_model)
    result = run_cli_in_process(write_yaml(folder / "smollm2_lora_sft.yaml", yaml_options))
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir, result


def test_llamafactory_lora_sft_yaml_trains_through_the_cli(lf_run, tiny_model):
    run_dir, result = lf_run
    assert "smollm2_lora_sft.yaml: LLaMA-Factory config, translated to TuneForge options:" in result.stdout
    assert "  trust_remote_code: true\n" in result.stdout  # the YAML's own opt-in, shown, never silent
    assert "note: plot_loss: no effect here (the loss is always charted from events.jsonl)" in result.stdout
    resolved = yaml.safe_load((run_dir / "config.yaml").read_text())
    expected = {
        "model": tiny_model,
        "method": "lora",
        "task": "sft",
        "dataset": "alpaca_en_demo",
        "dataset_dir": str(LLAMAFACTORY_DATA.resolve()),
        "cutoff_len": 256,
        "max_samples": 16,
        "lora_rank": 8,
        "lora_alpha": 16,  # LLaMA-Factory's default: twice the rank
        "val_size": 0.0,  # LLaMA-Factory's default: no validation split
        "learning_rate": 1e-4,
        "lr_scheduler_type": "cosine",
        "trust_remote_code": True,
    }
    assert {k: resolved[k] for k in expected} == expected
    logs = [e for e in read_events(run_dir) if e["type"] == "log"]
    assert [e["step"] for e in logs] == [1, 2, 3] and all(e["loss"] > 0 for e in logs)
    assert (run_dir / "adapter_model.safetensors").exists()


def test_unsupported_llamafactory_keys_stop_the_job_naming_them(tmp_path):
    config = lf_sft_yaml(tmp_path / "run", use_galore=True, finetuning_type="oft", stage="rlhf")
    result = run_cli_in_process(write_yaml(tmp_path / "lf.yaml", config))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("error: lf.yaml: cannot train this LLaMA-Factory config: ")
    assert "stage: 'rlhf' is not supported (use sft, pt, dpo, kto, rm, ppo)" in line
    assert "'use_galore' is not supported" in line
    assert "finetuning_type: 'oft' is not supported (use lora, full or freeze)" in line
    assert not (tmp_path / "run").exists()


def test_load_config_file_gives_the_form_every_option(tmp_path):
    ours = write_yaml(tmp_path / "ours.yaml", {"learning_rate": 1e-3, "method": "full"})
    options = load_config_file(ours)
    assert options["learning_rate"] == 1e-3 and options["method"] == "full" and options["lora_rank"] == 8
    text = "model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct\nstage: pt\nlora_rank: 16\nidentity_name: Nova\n"
    translated = load_config_file(text)
    assert translated["model"] == "default" and translated["task"] == "pt" and translated["identity_name"] == "Nova"
    assert (translated["lora_rank"], translated["lora_alpha"], translated["learning_rate"]) == (16, 32, 5e-5)
    # LLaMA-Factory checkpoints activations unless told not to; its fastest CPU setting turns it off.
    assert translated["gradient_checkpointing"] is True and options["gradient_checkpointing"] is False
    assert load_config_file(text + "disable_gradient_checkpointing: true\n")["gradient_checkpointing"] is False
    assert set(translated) == set(load_config_file("")) == set(options)
    with pytest.raises(TuneForgeError, match=r"unknown option 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        load_config_file("lerning_rate: 1e-4\n")
    with pytest.raises(TuneForgeError, match=r"'lerning_rate' is not supported \(did you mean 'learning_rate'\?\)"):
        load_config_file("stage: sft\nlerning_rate: 1e-4\n")
    with pytest.raises(TuneForgeError, match="both model_name_or_path and model are set"):
        load_config_file("model_name_or_path: a/b\nmodel: default\n")
    with pytest.raises(TuneForgeError, match="config file not found"):
        load_config_file(tmp_path / "missing.yaml")


# ---- adapters -----------------------------------------------------------------------------


def test_an_adapter_in_llamafactory_layout_is_recognised(lf_run, tmp_path, tiny_model):
    """Our adapter, laid out as LLaMA-Factory saves one: saves/<model>/lora/sft, base named by its hub id."""
    from peft import PeftModel

    from backend.models.sources import load_causal_lm, load_tokenizer

    run_dir, _result = lf_run
    saves = tmp_path / "saves" / "SmolLM2-135M-Instruct" / "lora" / "sft"
    saves.mkdir(parents=True)
    for name in ("adapter_model.safetensors", "tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copyfile(run_dir / name, saves / name)
    adapter_config = json.loads((run_dir / "adapter_config.json").read_text())
    assert adapter_config["base_model_name_or_path"] == tiny_model  # ours: the model's folder
    (saves / "trainer_log.jsonl").write_text('{"current_steps": 3, "loss": 1.7}\n')
    (saves / "all_results.json").write_text('{"train_loss": 1.7}')
    assert adapter_base_model(run_dir) == tiny_model
    # The embedded model, named by its hub id as LLaMA-Factory writes it, is ours offline.
    (saves / "adapter_config.json").write_text(
        json.dumps({**adapter_config, "base_model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct"})
    )
    assert adapter_base_model(saves) == "default"

    (saves / "adapter_config.json").write_text(json.dumps(adapter_config))
    assert adapter_base_model(saves) == tiny_model
    model = PeftModel.from_pretrained(load_causal_lm(resolve_model(adapter_base_model(saves))), str(saves))
    tokenizer = load_tokenizer(str(saves))
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Hi"}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    assert model.generate(**inputs, max_new_tokens=3, do_sample=False).shape[1] > inputs["input_ids"].shape[1]

    adapter_config["base_model_name_or_path"] = "/home/someone/models/Llama-3-8B"
    (saves / "adapter_config.json").write_text(json.dumps(adapter_config))
    with pytest.raises(TuneForgeError, match="trained on /home/someone/models/Llama-3-8B, which is not on this"):
        adapter_base_model(saves)
    with pytest.raises(TuneForgeError, match="not a PEFT adapter folder"):
        adapter_base_model(tmp_path)


# ---- the classic first fine-tune: a new name ----------------------------------------------


def name_rate(model, tokenizer, name: str) -> tuple[float, list[str]]:
    import torch

    # One left-padded batch: eight greedy answers for the price of about two.
    tokenizer.padding_side = "left"
    chats = [[{"role": "user", "content": question}] for question in IDENTITY_QUESTIONS]
    inputs = tokenizer.apply_chat_template(
        chats, add_generation_prompt=True, return_tensors="pt", return_dict=True, padding=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    answers = tokenizer.batch_decode(out[:, inputs["input_ids"].shape[1] :], skip_special_tokens=True)
    return sum(name.lower() in a.lower() for a in answers) / len(answers), answers


@pytest.mark.slow
@needs_llamafactory
def test_identity_with_a_new_name_trains_and_the_model_answers_with_it(tmp_path, default_model_dir):
    from peft import PeftModel

    from backend.models.sources import load_causal_lm, load_tokenizer

    run_dir = tmp_path / "identity"
    config = {
        "dataset": "identity",
        "dataset_dir": str(LLAMAFACTORY_DATA),
        "identity_name": NEW_NAME,
        "identity_author": NEW_AUTHOR,
        "output_dir": str(run_dir),
        "max_samples": 16,  # identity.json's English rows; the rest say the same in Chinese
        "learning_rate": 1e-3,
        "lr_scheduler_type": "constant",
        "max_steps": 16,
        "cutoff_len": 64,
        "val_size": 0,
    }
    result = run_cli_in_process(write_yaml(tmp_path / "run.yaml", config))
    assert result.returncode == 0, result.stderr[-2000:]
    tokenizer = load_tokenizer(str(default_model_dir))
    base = load_causal_lm(str(default_model_dir))
    base_rate, base_answers = name_rate(base, tokenizer, NEW_NAME)
    tuned_rate, tuned_answers = name_rate(PeftModel.from_pretrained(base, str(run_dir)), tokenizer, NEW_NAME)
    print(f"\nanswers naming {NEW_NAME}: base {base_rate:.0%}, tuned {tuned_rate:.0%}")
    print("base:", base_answers, "\ntuned:", tuned_answers)
    assert tuned_rate > base_rate, (base_answers, tuned_answers)
    assert tuned_rate >= 0.5, tuned_answers


# ---- the Dataset tab ----------------------------------------------------------------------


@needs_llamafactory
def test_dataset_tab_lists_a_llamafactory_folder_and_fills_identity_placeholders(page):
    from playwright.sync_api import expect

    summary = page.locator("#dataset-summary")
    expect(summary).to_contain_text("Format: alpaca", timeout=60_000)
    dataset_dir = page.locator("#opt-dataset_dir textarea, #opt-dataset_dir input").first
    dataset_dir.fill(str(LLAMAFACTORY_DATA))
    dataset_dir.press("Tab")
    pick(page, "demo-dataset", "dpo_en_demo (preference: dpo, orpo, kto, rm)")
    refusal = "dpo_en_demo.json: format preference does not fit task sft"
    expect(summary).to_contain_text(refusal, timeout=30_000)
    pick(page, "demo-dataset", "identity")
    expect(summary).to_contain_text("Rows: 91 usable of 91 read", timeout=30_000)
    expect(summary).to_contain_text("placeholders left as they are; set identity_author and identity_name")
    name = page.locator("#opt-identity_name textarea, #opt-identity_name input").first
    expect(name).to_be_visible()  # the accordion opened by itself
    name.fill(NEW_NAME)
    name.press("Tab")
    author = page.locator("#opt-identity_author textarea, #opt-identity_author input").first
    author.fill(NEW_AUTHOR)
    author.press("Tab")
    filled = f"I am {NEW_NAME}, an AI assistant developed by {NEW_AUTHOR}"
    expect(page.locator("#dataset-rendered")).to_contain_text(filled, timeout=30_000)
    expect(summary).not_to_contain_text("placeholders left")


def test_llamafactory_precision_quantization_freeze_and_deepspeed_keys_translate(tmp_path):
    (tmp_path / "ds_z3_config.json").write_text(json.dumps({"zero_optimization": {"stage": 3, "offload_param": {}}}))
    text = (
        "stage: sft\nfinetuning_type: lora\nquantization_bit: 4\nquantization_method: bnb\ndouble_quantization: true\n"
        "bf16: true\nddp_timeout: 180000000\n"
    )
    options = load_config_file(text)
    assert (options["method"], options["quantization_bit"], options["precision"]) == ("lora", 4, "auto")
    freeze = load_config_file("stage: sft\nfinetuning_type: freeze\nfreeze_trainable_layers: 3\nfp16: true\n")
    assert (freeze["method"], freeze["freeze_trainable_layers"], freeze["precision"]) == ("freeze", 3, "fp16")
    assert load_config_file("stage: sft\nquantization_bit: null\n")["quantization_bit"] == 0
    loaded, _ = load_config(write_yaml(tmp_path / "lf.yaml", {"stage": "sft", "deepspeed": "ds_z3_config.json"}))
    assert loaded.options["strategy"] == "deepspeed_zero3"
    assert any("offload_param settings are not carried over" in note for note in loaded.notes)


@pytest.mark.parametrize(
    "text, message",
    [
        ("stage: sft\nbf16: true\nfp16: true\n", "bf16 and fp16 are both true; keep one"),
        ("stage: sft\ndeepspeed: missing.json\n", "deepspeed: missing.json: file not found"),
        ("stage: sft\nquantization_bit: 2\n", "quantization_bit=2 is not one of: 0, 4, 8"),
        ("stage: sft\nquantization_type: fp4\n", "quantization_type: 'fp4': 4-bit quantization is NF4"),
    ],
)
def test_llamafactory_precision_keys_we_cannot_honour_are_named(text, message):
    with pytest.raises(TuneForgeError, match=re.escape(message)):
        load_config_file(text)
