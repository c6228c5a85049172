"""bf16 and QLoRA without a GPU: a CPU with native bf16 trains in bf16, bitsandbytes' CPU backend trains a 4-bit base.

Through the CLI on the tiny model. The QLoRA run is then chatted with, evaluated and exported as
a user would: chat and evaluation load its base in 4 bits as it trained, and the merged export
loads it dequantized and says so. Each test skips, with the reason, where this machine lacks what it needs.
"""

import pytest
import torch
import yaml
from peft import PeftModel
from transformers import AutoModelForCausalLM

from backend.capability import plan_run, probe
from backend.config import TrainConfig
from backend.evaluation.evaluate import Evaluator
from backend.events import read_events
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from tests.helpers import run_cli_in_process, write_config

HARDWARE = probe()
IDS = torch.tensor([[1, 2, 3, 4, 5]])


def statuses(run_dir) -> list[str]:
    return [e["message"] for e in read_events(run_dir) if e["type"] == "status"]


@pytest.fixture(scope="module")
def qlora_run(tmp_path_factory, tiny_model, secret_dataset):
    """A QLoRA run of the tiny model, trained by the CLI into a workspace's runs folder: (jobs, run id)."""
    if not HARDWARE["cuda"] and not HARDWARE["bitsandbytes_cpu"]:
        pytest.skip("bitsandbytes has no CPU backend here (pip install -U bitsandbytes)")
    workspace = tmp_path_factory.mktemp("qlora") / "workspace"
    options = dict(model=tiny_model, dataset=str(secret_dataset), method="qlora", learning_rate=1e-2)
    options.update(max_steps=6, val_size=0.25, eval_steps=6, output_dir=str(workspace / "runs" / "qlora-cpu"))
    result = run_cli_in_process(write_config(workspace.parent / "run.yaml", **options))
    assert result.returncode == 0, result.stderr[-3000:]
    jobs = JobManager(workspace)
    yield jobs, "qlora-cpu", TrainConfig.from_dict(options)
    jobs.shutdown()


def test_qlora_trains_a_4bit_base_on_this_machine_and_the_adapter_loads_with_plain_peft(qlora_run, tiny_model):
    jobs, run_id, config = qlora_run
    run_dir = jobs.run_dir(run_id)
    assert read_events(run_dir)[-1]["status"] == "completed"
    precision = plan_run(config, HARDWARE)
    assert f"loading model ({precision.name}, 4-bit base)" in statuses(run_dir)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["method"] == "qlora"

    base = AutoModelForCausalLM.from_pretrained(tiny_model)
    with torch.no_grad():
        before = base(IDS).logits
        tuned = PeftModel.from_pretrained(base, run_dir)(IDS).logits
    assert not torch.allclose(before, tuned)  # the adapter moved the model


def test_chat_and_evaluation_of_a_qlora_run_load_its_base_in_4_bits(qlora_run):
    jobs, run_id, _ = qlora_run
    chat = ChatEngine(jobs)
    with chat.model_for(run_id) as (model, _):
        assert any(type(m).__name__ == "Linear4bit" for m in model.modules())  # as it trained
    assert isinstance(chat.reply(run_id, "What is the secret word?", temperature=0, max_new_tokens=8), str)
    metrics = Evaluator(jobs, chat).evaluate_generation(run_id, max_rows=2, max_new_tokens=4)["metrics"]
    assert metrics["eval_loss"] > 0 and metrics["perplexity"] > 1


def test_merged_export_of_a_qlora_run_dequantizes_the_base_and_says_so(qlora_run, tiny_model):
    jobs, run_id, _ = qlora_run
    exporter = Exporter(jobs)
    folder = exporter.export(run_id, "merged")
    note = exporter.note(run_id, "merged")
    assert note.startswith("The adapter was trained on a 4-bit base.") and "dequantized" in note
    assert note in (folder / "README.md").read_text()
    assert exporter.note(run_id, "adapter") == ""

    merged = AutoModelForCausalLM.from_pretrained(folder)
    assert not hasattr(merged.config, "quantization_config")  # a full-precision model, loadable anywhere
    tuned = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(tiny_model), jobs.run_dir(run_id))
    with torch.no_grad():
        torch.testing.assert_close(merged(IDS).logits, tuned(IDS).logits, atol=1e-4, rtol=0)


def test_bf16_trains_on_a_cpu_with_native_bf16(tmp_path, tiny_model, secret_dataset):
    if HARDWARE["cuda"] or not HARDWARE["bf16"]:
        pytest.skip("needs a CPU-only machine whose CPU has native bf16 (AVX512_BF16 or AMX)")
    run_dir = tmp_path / "run"
    options = dict(model=tiny_model, dataset=str(secret_dataset), precision="bf16", max_steps=4, logging_steps=2)
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", output_dir=str(run_dir), **options))
    assert result.returncode == 0, result.stderr[-3000:]
    events = read_events(run_dir)
    assert events[-1]["status"] == "completed"
    assert "loading model (bf16)" in statuses(run_dir)
    assert yaml.safe_load((run_dir / "config.yaml").read_text())["precision"] == "bf16"
    assert all(e["loss"] is not None and e["tokens_per_s"] for e in events if e["type"] == "log")


def test_bf16_is_refused_in_one_line_on_a_cpu_without_it(tmp_path):
    if HARDWARE["cuda"] or HARDWARE["bf16"]:
        pytest.skip(f"this machine runs bf16 ({HARDWARE['cpu_bf16'] or HARDWARE['gpu_name']})")
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", precision="bf16", output_dir=str(tmp_path / "run")))
    assert result.returncode == 2
    assert result.stderr.strip().splitlines() == [
        "error: bf16 needs a CPU with native bf16 (AVX512_BF16 or AMX) or a CUDA GPU; this CPU has neither"
    ]


def test_only_a_run_that_quantizes_loads_bitsandbytes(tmp_path, monkeypatch, tiny_model):
    """Its import compiles kernels (seconds of every job's start), so a run that quantizes nothing hides it, and so
    do serving, exporting and evaluating a finished run that needs nothing quantized."""
    import sys

    from backend.capability import hide_bitsandbytes, may_be_saved_quantized, saved_run_uses_bitsandbytes
    from backend.train import hide_unused_bitsandbytes

    saved = tmp_path / "saved-4bit"  # a model folder saved quantized still needs it to load
    saved.mkdir()
    (saved / "config.json").write_text('{"quantization_config": {"load_in_4bit": true}}')
    cases = {
        "lora": ({"model": tiny_model}, True),
        "qlora": ({"model": tiny_model, "method": "qlora"}, False),
        "8-bit lora": ({"model": tiny_model, "quantization_bit": 8}, False),
        "a model saved in 4 bits": ({"model": str(saved)}, False),
        "a hub id, whose config is not here": ({"model": "someone/model-bnb-4bit"}, False),
        "the embedded model": ({"model": "default"}, True),
    }
    for name, (options, hidden) in cases.items():
        monkeypatch.delitem(sys.modules, "bitsandbytes", raising=False)
        hide_unused_bitsandbytes(TrainConfig.from_dict(options))
        assert ("bitsandbytes" in sys.modules and sys.modules["bitsandbytes"] is None) == hidden, name
        # The same run finished: serving or exporting it (backend.serve) loads it again, from its config.yaml.
        assert saved_run_uses_bitsandbytes(options) is not hidden, name
    # An evaluation job loads each model unquantized: only a folder saved quantized (or a hub id) needs it.
    assert [may_be_saved_quantized(m) for m in (tiny_model, str(saved), "someone/model", "default")] == [
        False,
        True,
        True,
        False,
    ]
    # Once bitsandbytes is imported, hiding it changes nothing.
    monkeypatch.setitem(sys.modules, "bitsandbytes", sys)
    hide_bitsandbytes()
    assert sys.modules["bitsandbytes"] is sys
