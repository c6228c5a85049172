"""Training through the CLI, exactly as the UI runs it: events, falling loss, standard weights."""

import json
from pathlib import Path

import pytest
import yaml

from backend.capability import plan_run, probe
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.events import read_events
from tests.helpers import DATA, run_cli, run_cli_in_process, write_config

LOG_KEYS = {"step", "max_steps", "epoch", "loss", "learning_rate", "elapsed_s", "tokens_per_s"}
QUESTION = [{"role": "user", "content": "What is the secret word?"}]


def greedy_answer(model, tokenizer, messages=QUESTION) -> str:
    import torch

    inputs = tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=20, do_sample=False)
    return tokenizer.decode(out[0][inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def secret_run(run_dir, dataset, **options) -> Path:
    """30 LoRA steps on the secret dataset through the CLI, evaluated and checkpointed on the way."""
    config = write_config(
        run_dir.parent / f"{run_dir.name}.yaml",
        dataset=str(dataset),
        output_dir=str(run_dir),
        learning_rate=1e-3,
        max_steps=30,
        val_size=4,
        eval_steps=10,
        save_steps=15,
        lr_scheduler_type="constant",
        **options,
    )
    result = run_cli(config)
    assert result.returncode == 0, result.stderr[-2000:]
    return run_dir


@pytest.fixture(scope="module")
def lora_run(real_jobs, secret_lora_run) -> Path:
    """On the real model, through the job manager (which runs this same CLI): what it learns is the point."""
    return real_jobs.run_dir(secret_lora_run)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory, secret_dataset, small_model):
    """On the tiny model: what the run leaves behind is the point."""
    return secret_run(tmp_path_factory.mktemp("runs") / "tiny-lora", secret_dataset, model=small_model)


def test_events_follow_the_contract(tiny_run):
    events = read_events(tiny_run)
    assert all("type" in e and "time" in e for e in events)
    start, end = events[0], events[-1]
    assert start["type"] == "start" and start["world_size"] == 1
    assert start["config"]["max_steps"] == 30 and start["config"]["output_dir"] == str(tiny_run)
    assert end == {**end, "type": "end", "status": "completed"}
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, 31))
    assert all(LOG_KEYS <= e.keys() and e["max_steps"] == 30 and e["tokens_per_s"] > 0 for e in logs)
    # Speed as arithmetic too: what a token's step costs (test_flops.py checks the count against torch's
    # FLOP counter) times tokens/s, against this machine's cached matmul peak; gflops is rounded to 0.1.
    assert all(e["gflops"] > 0 and 0 <= e["mfu"] <= 1.0 and e["flops_per_token"] > 0 for e in logs)  # tiny: MFU ~0
    # The precision the run trains in, as auto resolved it on this hardware, beside what packed rows attend with.
    training = next(e for e in events if e["type"] == "status" and e.get("message") == "training")
    assert training["precision"] == plan_run(TrainConfig.from_dict(start["config"]), probe()).name
    assert "attention" in training
    assert logs[-1]["gflops"] == pytest.approx(logs[-1]["tokens_per_s"] * logs[-1]["flops_per_token"] / 1e9, abs=0.06)
    assert [e["step"] for e in events if e["type"] == "eval"] == [10, 20, 30]
    checkpoints = [e for e in events if e["type"] == "checkpoint"]
    assert [c["step"] for c in checkpoints] == [15, 30]
    assert all((tiny_run / f"checkpoint-{c['step']}").is_dir() for c in checkpoints)


@pytest.mark.slow
def test_loss_falls(lora_run):
    losses = [e["loss"] for e in read_events(lora_run) if e["type"] == "log"]
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5
    evals = [e["eval_loss"] for e in read_events(lora_run) if e["type"] == "eval"]
    assert evals[-1] < evals[0]


def test_run_dir_holds_resolved_config_log_and_metrics(tiny_run):
    resolved = yaml.safe_load((tiny_run / "config.yaml").read_text())
    assert resolved["learning_rate"] == 1e-3 and resolved["lora_rank"] == 8  # a default, written out
    assert "step 30/30" in (tiny_run / "train.log").read_text()
    metrics = json.loads((tiny_run / "metrics.json").read_text())
    assert metrics["global_step"] == 30 and metrics["eval_loss"] > 0


@pytest.mark.slow
def test_adapter_loads_with_plain_peft_and_changes_answers(lora_run, default_model_dir):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    assert (lora_run / "adapter_config.json").exists() and (lora_run / "adapter_model.safetensors").exists()
    tokenizer = AutoTokenizer.from_pretrained(lora_run)
    base = AutoModelForCausalLM.from_pretrained(default_model_dir)
    before = greedy_answer(base, tokenizer)
    tuned = PeftModel.from_pretrained(base, lora_run)
    after = greedy_answer(tuned, tokenizer)
    assert "pineapple" not in before.lower()
    assert "pineapple" in after.lower(), after


def test_full_finetuning_saves_a_plain_transformers_model(tmp_path, secret_dataset, small_model):
    from transformers import AutoModelForCausalLM, AutoTokenizer

    run_dir = tmp_path / "full"
    config = write_config(
        tmp_path / "run.yaml",
        model=small_model,
        dataset=str(secret_dataset),
        output_dir=str(run_dir),
        method="full",
        learning_rate=1e-5,
        max_steps=2,
        val_size=0,
    )
    result = run_cli_in_process(config)
    assert result.returncode == 0, result.stderr[-2000:]
    assert (run_dir / "config.json").exists() and list(run_dir.glob("*.safetensors"))
    assert not (run_dir / "adapter_config.json").exists()
    model = AutoModelForCausalLM.from_pretrained(run_dir)
    tokenizer = AutoTokenizer.from_pretrained(run_dir)
    inputs = tokenizer.apply_chat_template(QUESTION, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**inputs, max_new_tokens=4, min_new_tokens=4, do_sample=False)
    assert out.shape[1] == inputs["input_ids"].shape[1] + 4  # it loads and generates
    assert read_events(run_dir)[-1]["status"] == "completed"


def test_bad_option_is_one_line_without_traceback(tmp_path):
    result = run_cli(write_config(tmp_path / "run.yaml", lerning_rate=1e-4))
    assert result.returncode == 2
    assert result.stderr.strip() == "error: unknown option 'lerning_rate' (did you mean 'learning_rate'?)"


def test_missing_dataset_fails_the_run_with_a_readable_end_event(tmp_path):
    run_dir = tmp_path / "run"
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", dataset="nope.jsonl", output_dir=str(run_dir)))
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "error: dataset 'nope.jsonl' is neither a file, a registered name, nor a bundled demo" in result.stderr
    end = read_events(run_dir)[-1]
    assert end["status"] == "failed" and "nope.jsonl" in end["error"]


def chat_files(folder: Path) -> list[Path]:
    """One file of every chat layout and table type the Dataset tab reads."""
    import pandas as pd

    (folder / "pairs.tsv").write_text("prompt\tcompletion\nSay hi\tHi!\nCount to 3\t1, 2, 3\n")
    pd.DataFrame({"prompt": ["Say hello", "Count"], "completion": ["Hello!", "1, 2"]}).to_parquet(folder / "p.parquet")
    named = ("alpaca.json", "sharegpt.json", "openai.jsonl", "prompt_completion.csv")
    return [DATA / name for name in named] + [folder / "pairs.tsv", folder / "p.parquet"]


def test_every_chat_format_trains_through_the_cli_in_one_mixed_run(tmp_path, small_model):
    """Six files, six layouts, one run: one step over a batch of every row, whose token count proves each
    file's rows were trained (per-format detection and conversion are tested in test_data.py)."""
    from backend.config import TrainConfig
    from backend.data import DataOptions, load_splits
    from backend.models.sources import load_tokenizer
    from backend.templates import encode_example

    options = {"model": small_model, "dataset": ",".join(map(str, chat_files(tmp_path))), "val_size": 0}
    options.update(max_steps=1, per_device_train_batch_size=12, cutoff_len=256)
    run_dir = tmp_path / "run"
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", output_dir=str(run_dir), **options))
    assert result.returncode == 0, result.stderr[-2000:]

    examples = load_splits(DataOptions.from_config(TrainConfig.from_dict(options))).train
    tokenizer = load_tokenizer(small_model)
    assert len(examples) == 12  # two rows from each file
    expected = sum(len(encode_example(tokenizer, example, 256)["input_ids"]) for example in examples)
    (log,) = [e for e in read_events(run_dir) if e["type"] == "log"]
    assert log["tokens_seen"] == expected and log["loss"] > 0
    assert (run_dir / "adapter_model.safetensors").exists()


def test_plain_text_trains_through_the_cli_as_pt(tmp_path, small_model):
    data = tmp_path / "notes.txt"
    data.write_text("Forge is an assistant.\n\nIt helps people fine-tune models.\n")
    run_dir = tmp_path / "run"
    options = {"model": small_model, "dataset": str(data), "task": "pt", "max_steps": 2, "val_size": 0}
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", output_dir=str(run_dir), **options))
    assert result.returncode == 0, result.stderr[-2000:]
    logs = [e for e in read_events(run_dir) if e["type"] == "log"]
    assert len(logs) == 2 and all(e["loss"] > 0 for e in logs)
    assert (run_dir / "adapter_model.safetensors").exists()


def test_skipped_rows_and_cleaning_are_reported_in_the_run(tmp_path, small_model):
    data = tmp_path / "messy.jsonl"
    rows = [json.dumps({"prompt": f"Email me at user{i}@example.com", "completion": f"Sure {i}."}) for i in range(6)]
    data.write_text("\n".join(rows + ["{broken", rows[0]]) + "\n")
    run_dir = tmp_path / "run"
    config = write_config(
        tmp_path / "run.yaml",
        model=small_model,
        dataset=str(data),
        output_dir=str(run_dir),
        max_steps=1,
        val_size=0,
        skip_bad_rows=True,
        scrub_pii=True,
        dedup=True,
    )
    assert run_cli_in_process(config).returncode == 0
    messages = [e["message"] for e in read_events(run_dir) if e["type"] == "status"]
    assert (
        "messy.jsonl: skipped 1 bad rows (line 7: invalid JSON (Expecting property name enclosed in double quotes))"
        in messages
    )
    assert "messy.jsonl: scrubbed PII: 7 email" in messages
    assert "dropped 1 duplicate rows" in messages


def test_the_speed_trial_behind_estimate_time_measures_the_tiny_model(small_model, secret_dataset, tmp_path):
    """What the Dataset tab's Estimate time button runs: six real steps in a folder with no run config."""
    import subprocess
    import sys

    from tests.helpers import ROOT, write_config

    config = write_config(tmp_path / "run.yaml", model=small_model, dataset=str(secret_dataset), cutoff_len=256)
    out = subprocess.run(
        [sys.executable, "-m", "backend.training.speed_trial", "--config", str(config)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert json.loads(out.stdout.strip().splitlines()[-1])["tokens_per_s"] > 0


def test_a_terminal_run_with_a_relative_output_dir_lands_in_the_workspace_the_app_lists(tmp_path, monkeypatch):
    """Refused after its folder is made (no such dataset): where the run lands is the point, not training."""
    import signal

    from backend.runfiles import LOG_REDIRECTED_ENV
    from backend.runs.job_manager import JobManager
    from backend.train import main

    workspace = tmp_path / "ws"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv(LOG_REDIRECTED_ENV, "1")
    monkeypatch.setenv("TUNEFORGE_WORKSPACE", str(tmp_path / "elsewhere"))  # restored after; --workspace wins
    config = write_config(tmp_path / "run.yaml", dataset="nope.jsonl", output_dir="from-terminal")
    on_terminate = signal.getsignal(signal.SIGTERM)
    try:
        assert main(["--config", str(config), "--workspace", str(workspace)]) == 2
    finally:
        signal.signal(signal.SIGTERM, on_terminate)
    assert not (tmp_path / "from-terminal").exists()
    jobs = JobManager(workspace)
    try:
        status = jobs.status("from-terminal")
        assert status["status"] == "failed" and "nope.jsonl" in status["error"]
        assert Path(status["run_dir"]) == (workspace / "runs" / "from-terminal").resolve()
    finally:
        jobs.shutdown()


def test_a_nested_relative_output_dir_becomes_one_run_name_the_app_lists(tmp_path):
    from backend.train import place_in_workspace

    assert place_in_workspace("/abs/run", tmp_path) == "/abs/run"  # kept as given
    assert place_in_workspace("saves/llama3-8b/lora/sft", tmp_path) == str(
        tmp_path / "runs" / "saves-llama3-8b-lora-sft"
    )
    with pytest.raises(TuneForgeError, match=r"^output_dir '../x': a relative output_dir is a folder of "):
        place_in_workspace("../x", tmp_path)


def test_train_help_says_where_a_relative_output_dir_goes(capsys):
    from backend.train import main

    with pytest.raises(SystemExit) as exit_:
        main(["--help"])
    assert exit_.value.code == 0
    printed = " ".join(capsys.readouterr().out.split())
    assert "--workspace" in printed and "a relative output_dir, or none, is a folder of its runs/" in printed
