"""Export: a merged model that plain transformers loads and that answers exactly like base + adapter.

On the tiny model: what is checked is that the export reproduces the run, not what the run learnt.
"""

import json
import zipfile

import pytest
import torch
from peft import PeftModel
from transformers import AutoModelForCausalLM, AutoTokenizer

from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from backend.serving.export import Exporter
from tests.helpers import wait_for


@pytest.fixture(scope="module")
def trained(tmp_path_factory, secret_dataset, tiny_model):
    workspace = tmp_path_factory.mktemp("export") / "workspace"
    jobs = JobManager(workspace)
    # A high learning rate, so the adapter moves the tiny model's answers away from its base's.
    options = {"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 12, "learning_rate": 1e-2}
    run_id = jobs.start({**options, "val_size": 0.25, "eval_steps": 6})
    status = wait_for(lambda: (s := jobs.status(run_id))["status"] not in ("queued", "running") and s, timeout=300)
    assert status["status"] == "completed", status
    yield jobs, run_id
    jobs.shutdown()


def greedy(model, tokenizer, question: str) -> str:
    inputs = tokenizer.apply_chat_template(
        [{"role": "user", "content": question}], add_generation_prompt=True, return_tensors="pt", return_dict=True
    )
    with torch.no_grad():
        out = model.generate(**inputs, max_new_tokens=16, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    return tokenizer.decode(out[0, inputs["input_ids"].shape[1] :], skip_special_tokens=True)


def test_merged_export_loads_with_plain_transformers_and_matches_base_plus_adapter(trained, tiny_model_dir):
    jobs, run_id = trained
    folder = Exporter(jobs).export(run_id, "merged", max_shard_size="5MB")
    shards = sorted(p.name for p in folder.glob("model-*.safetensors"))
    assert len(shards) >= 2 and (folder / "model.safetensors.index.json").exists()  # 13 MB in 5 MB shards
    assert not list(folder.glob("adapter_*"))

    merged = AutoModelForCausalLM.from_pretrained(folder)
    tokenizer = AutoTokenizer.from_pretrained(folder)
    assert tokenizer.chat_template
    base = AutoModelForCausalLM.from_pretrained(tiny_model_dir)
    before = greedy(base, tokenizer, "What is the secret word?")
    tuned = PeftModel.from_pretrained(base, jobs.run_dir(run_id))
    for question in ("What is the secret word?", "Name a fruit."):
        assert greedy(merged, tokenizer, question) == greedy(tuned, tokenizer, question)
    assert greedy(merged, tokenizer, "What is the secret word?") != before  # the adapter is in the merge
    ids = torch.tensor([[1, 2, 3, 4]])
    torch.testing.assert_close(merged(ids).logits, tuned(ids).logits, atol=1e-4, rtol=0)

    card = (folder / "README.md").read_text()
    assert f"base_model: {tiny_model_dir}" in card
    assert "| learning_rate | 0.01 |" in card and "| lora_rank | 8 |" in card
    assert "| eval_loss |" in card and "![loss curve](loss_curve.png)" in card
    assert (folder / "loss_curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_adapter_zip_and_an_offline_push_that_keeps_the_export(trained):
    jobs, run_id = trained
    exporter = Exporter(jobs)
    archive = exporter.zip(run_id, "adapter")
    with zipfile.ZipFile(archive) as zf:
        names = {n.split("/", 1)[1] for n in zf.namelist()}
    assert {"adapter_config.json", "adapter_model.safetensors", "tokenizer.json", "README.md"} <= names
    assert "library_name: peft" in (archive.parent / "adapter" / "README.md").read_text()

    before = sorted(p.name for p in (archive.parent / "adapter").iterdir())
    with pytest.raises(TuneForgeError, match=r"^push to alice/forge failed: .*The local export in .* is intact$"):
        exporter.push(run_id, "alice/forge", "hf_dummy", private=True, kind="adapter")
    assert sorted(p.name for p in (archive.parent / "adapter").iterdir()) == before
    assert json.loads((archive.parent / "adapter" / "adapter_config.json").read_text())["r"] == 8


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ({"kind": "onnx"}, "export kind 'onnx': use one of merged, adapter, gguf"),
        ({"max_shard_size": "lots"}, "max_shard_size 'LOTS'"),
    ],
)
def test_bad_export_options_are_refused(trained, args, message):
    jobs, run_id = trained
    with pytest.raises(TuneForgeError, match=message):
        Exporter(jobs).export(run_id, **args)


def test_push_needs_a_valid_repo_id_and_token(trained):
    jobs, run_id = trained
    with pytest.raises(TuneForgeError, match="use owner/name"):
        Exporter(jobs).push(run_id, "../etc", "hf_x")
    with pytest.raises(TuneForgeError, match="access token"):
        Exporter(jobs).push(run_id, "alice/forge", " ")


def export_cli(capsys, *argv: str) -> tuple[int, str, str]:
    from backend.export import main

    code = main(list(argv))
    printed = capsys.readouterr()
    return code, printed.out, printed.err


def test_export_from_a_terminal_writes_where_the_export_tab_does(trained, capsys):
    jobs, run_id = trained
    code, out, err = export_cli(capsys, "--workspace", str(jobs.workspace), "--run", run_id, "--format", "adapter")
    assert code == 0, err
    folder = jobs.run_dir(run_id) / "export" / "adapter"
    assert out.strip().splitlines()[-1] == str(folder)
    assert (folder / "adapter_model.safetensors").exists() and (folder / "README.md").exists()
    code, out, err = export_cli(
        capsys, "--workspace", str(jobs.workspace), "--run", run_id, "--format", "adapter", "--zip"
    )
    assert code == 0 and out.strip().splitlines()[-1] == str(folder.parent / f"{run_id}-adapter.zip")


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--run", "no-such-run"], "error: no run named 'no-such-run'"),
        (["--max-shard-size", "lots"], "error: max_shard_size 'LOTS': use a size like 500MB or 2GB"),
        (["--push", "alice/forge", "--format", "adapter"], "error: a Hugging Face access token (write scope)"),
    ],
)
def test_export_from_a_terminal_refuses_in_one_line(trained, capsys, monkeypatch, argv, message):
    jobs, run_id = trained
    monkeypatch.delenv("HF_TOKEN", raising=False)
    code, _, err = export_cli(capsys, "--workspace", str(jobs.workspace), "--run", run_id, *argv)
    assert code == 2 and len(err.strip().splitlines()) == 1 and err.startswith(message), err
