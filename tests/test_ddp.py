"""Two processes, one run: a 2-process DDP LoRA job on CPU over gloo, launched by backend.train through torchrun.

The job is the same `python -m backend.train --config run.yaml` as always, with nproc_per_node: 2.
"""

from __future__ import annotations

import re
import time

import pytest

from backend.events import read_events
from backend.runs.job_manager import JobManager
from tests.helpers import free_port, is_live, live_descendants, run_cli, wait_for, write_config

RANK_LINE = re.compile(r"rank (\d) of 2: trained (\d+) steps; trainable weights checksum (\S+)")


def small_run(model, dataset, run_dir, **options) -> dict:
    return {
        "model": model,
        "dataset": str(dataset),
        "output_dir": str(run_dir),
        "max_steps": 2,
        "per_device_train_batch_size": 2,
        "val_size": 0,
        "save_steps": 0,
        "report_to": "none",
        "lr_scheduler_type": "constant",
        "learning_rate": 1e-3,
        **options,
    }


@pytest.fixture(scope="module")
def ddp_run(tmp_path_factory, secret_dataset, small_model):
    run_dir = tmp_path_factory.mktemp("runs") / "ddp"
    options = small_run(small_model, secret_dataset, run_dir, nproc_per_node=2, master_port=free_port())
    result = run_cli(write_config(tmp_path_factory.mktemp("cfg") / "run.yaml", **options))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return run_dir


def test_two_processes_report_as_one_run(ddp_run):
    events = read_events(ddp_run)
    types = [e["type"] for e in events]
    assert types.count("start") == 1 and types.count("end") == 1
    assert events[0]["type"] == "start" and events[0]["world_size"] == 2
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    assert [e["step"] for e in events if e["type"] == "log"] == [1, 2]  # each step once, from rank 0


def test_both_ranks_trained_and_kept_the_same_weights(ddp_run):
    rank0 = RANK_LINE.findall((ddp_run / "train.log").read_text())
    rank1 = RANK_LINE.findall((ddp_run / "ranks" / "rank-1.log").read_text())
    assert [r[:2] for r in rank0] == [("0", "2")] and [r[:2] for r in rank1] == [("1", "2")]
    # The ranks read different halves of each batch; equal weights mean their gradients were averaged.
    assert rank0[0][2] == rank1[0][2]


def test_two_processes_train_like_one_with_twice_the_batch(ddp_run, tmp_path, secret_dataset, small_model):
    single_dir = tmp_path / "single"
    options = small_run(small_model, secret_dataset, single_dir, per_device_train_batch_size=4)
    result = run_cli(write_config(tmp_path / "run.yaml", **options))
    assert result.returncode == 0, result.stderr[-2000:]

    def losses(run_dir):
        return [(e["step"], e["loss"], e["tokens_seen"]) for e in read_events(run_dir) if e["type"] == "log"]

    for (step, ddp_loss, ddp_tokens), (_, single_loss, single_tokens) in zip(
        losses(ddp_run), losses(single_dir), strict=True
    ):
        assert ddp_loss == pytest.approx(single_loss, rel=1e-4), step
        assert ddp_tokens == single_tokens  # tokens counted over both ranks


def test_the_result_loads_with_plain_peft(ddp_run, small_model):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    base = AutoModelForCausalLM.from_pretrained(small_model)
    tuned = PeftModel.from_pretrained(base, ddp_run)
    lora_b = [p for name, p in tuned.named_parameters() if "lora_B" in name]
    assert lora_b and any(torch.count_nonzero(p) for p in lora_b)  # B starts at zero: these were trained
    assert not list(ddp_run.glob("ranks/*.safetensors")) and len(list(ddp_run.glob("*.safetensors"))) == 1


def test_abort_ends_every_rank_and_marks_the_run_aborted_once(workspace, secret_dataset, small_model):
    jobs = JobManager(workspace)
    try:
        long_run = {**small_run(small_model, secret_dataset, ""), "max_steps": 10_000, "nproc_per_node": 2}
        long_run.update(output_dir="", master_port=free_port())
        run_id = jobs.start(long_run)
        wait_for(lambda: jobs.status(run_id)["step"] >= 1, timeout=300)
        launcher = next(e for e in jobs.events(run_id) if e["type"] == "start")["pid"]
        tree = live_descendants(launcher)
        assert len(tree) >= 3  # torchrun and its two ranks
        jobs.abort(run_id)
        deadline = time.time() + 10
        while time.time() < deadline and any(is_live(pid) for pid in [launcher, *tree]):
            time.sleep(0.2)
        assert not [pid for pid in [launcher, *tree] if is_live(pid)]
        status = jobs.status(run_id)
        assert status["status"] == "aborted" and status["error"] == "aborted by the user"
        assert [e["type"] for e in read_events(jobs.run_dir(run_id))].count("end") == 1
    finally:
        jobs.shutdown()
