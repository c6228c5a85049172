"""Failures end a run visibly, with one line that says what happened, and keep what was saved."""

import math
import os
import signal
import time

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from backend.checkpoints import pick_checkpoint
from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.runs.job_manager import JobManager
from backend.training.callbacks import EventsCallback
from tests.helpers import wait_for


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_loss_stops_training_with_a_hint(tmp_path, loss):
    callback = EventsCallback(EventLog(tmp_path), tmp_path)
    state = TrainerState()
    state.global_step = 7
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.5, report_to="none")
    with pytest.raises(TuneForgeError, match=r"the loss became (nan|inf) at step 7; lower learning_rate \(now 0.5\)"):
        callback.on_log(args, state, TrainerControl(), logs={"loss": loss})


def test_a_job_killed_by_the_os_is_interrupted_then_resumes_where_it_stopped(workspace, secret_dataset, small_model):
    jobs = JobManager(workspace)
    try:
        # Enough steps that the kill lands mid-run: a tiny model's step takes a fraction of a second.
        options = {"dataset": str(secret_dataset), "max_steps": 40, "save_steps": 2, "val_size": 0, "logging_steps": 1}
        options["model"] = small_model
        run_id = jobs.start(options)
        run_dir = jobs.run_dir(run_id)
        wait_for(lambda: any(e["type"] == "checkpoint" and e["step"] >= 4 for e in jobs.events(run_id)))
        pid = next(e for e in jobs.events(run_id) if e["type"] == "start")["pid"]
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] != "running" and s, timeout=30)
        assert status["status"] == "interrupted"
        assert status["error"].startswith("the job was killed by SIGKILL (the system may have run out of memory)")
        assert "step 1/" in (run_dir / "train.log").read_text()
        killed_at = status["step"]

        with pytest.raises(TuneForgeError, match=r"cannot resume: method was 'lora', now 'full'"):
            jobs.resume(run_id, {"method": "full"})

        # A crash while saving leaves the newest checkpoint half-written: resume passes over it. The kill may
        # itself have cut a save short, so the newest whole one is damaged here, and the one before it resumes.
        newest, _ = pick_checkpoint(run_dir, "last")
        (newest / "adapter_model.safetensors").write_bytes(b"\x00" * 10)
        older = int(pick_checkpoint(run_dir, "last")[0].name.split("-")[1])

        jobs.resume(run_id)
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] not in ("running", "queued") and s)
        assert status["status"] == "completed", status
        assert status["step"] == 40 and status["resumes"] == 1

        events = jobs.events(run_id)
        restart = [e for e in events if e["type"] == "start"][-1]
        assert restart["resumed_from"] == older < killed_at
        steps = [e["step"] for e in events if e["type"] == "log"]
        assert steps == list(range(1, 41))  # one point a step: the attempt's points past the checkpoint are replaced
        log = (run_dir / "train.log").read_text()
        assert f"skipped {newest.name}: adapter_model.safetensors is damaged" in log
        assert f"resuming from checkpoint-{older}" in log
        assert (run_dir / "adapter_model.safetensors").exists()
    finally:
        jobs.shutdown()


def test_a_completed_run_cannot_be_resumed_and_a_run_without_checkpoints_says_so(
    workspace, secret_dataset, small_model
):
    jobs = JobManager(workspace)
    try:
        run_id = jobs.start(
            {"model": small_model, "dataset": str(secret_dataset), "max_steps": 3, "save_steps": 0, "val_size": 0}
        )
        wait_for(lambda: jobs.status(run_id)["status"] == "completed")
        with pytest.raises(
            TuneForgeError, match=r"is completed; only an interrupted, failed or aborted run can resume"
        ):
            jobs.resume(run_id)
        long_run = {
            "model": small_model,
            "dataset": str(secret_dataset),
            "max_steps": 10_000,
            "save_steps": 0,
            "val_size": 0,
        }
        long_id = jobs.start(long_run)
        wait_for(lambda: jobs.status(long_id)["step"] >= 1)
        jobs.abort(long_id)
        with pytest.raises(TuneForgeError, match=r"nothing to resume: .* has no usable checkpoint \(set save_steps"):
            jobs.resume(long_id)
    finally:
        jobs.shutdown()


def test_an_allocation_that_fails_is_named_out_of_memory_with_what_to_lower():
    import torch

    from backend.config import TrainConfig
    from backend.train import out_of_memory_message

    config = TrainConfig.from_dict({"per_device_train_batch_size": 64, "cutoff_len": 4096})
    with pytest.raises(RuntimeError) as failed:  # a real allocator failure: ~40 TB
        torch.empty(10**13, dtype=torch.float32)
    message = out_of_memory_message(failed.value, config)
    assert message.startswith("out of memory while training (per_device_train_batch_size 64, cutoff_len 4096)")
    assert "\n" not in message
    assert message.endswith("to keep the effective batch")  # already an adapter: nothing lighter to suggest
    full = TrainConfig.from_dict({"method": "full"})
    assert out_of_memory_message(failed.value, full).endswith("; or use method lora or qlora (a 4-bit base)")
    onednn = RuntimeError("could not create a primitive")  # a CPU's bf16 kernels, when their workspace finds no room
    assert out_of_memory_message(onednn, config).startswith("out of memory while training")
    assert out_of_memory_message(ValueError("bad value"), config) is None


def test_a_model_that_does_not_exist_fails_the_run_in_one_line(tmp_path):
    jobs = JobManager(tmp_path / "workspace")
    expected = {
        "no_such_model": "model 'no_such_model' is not 'default', an existing folder, or a hub id",
        "nobody/no-such-model-here": "nobody/no-such-model-here",  # a hub id, and the tests are offline
    }
    runs = {jobs.start({"model": model, "max_steps": 1}): message for model, message in expected.items()}
    for run_id, message in runs.items():
        deadline = time.time() + 300
        while jobs.status(run_id)["status"] in ("queued", "running") and time.time() < deadline:
            time.sleep(0.5)
        status = jobs.status(run_id)
        assert status["status"] == "failed" and "\n" not in status["error"], status
        assert message in status["error"] and "Traceback" not in status["error"], status["error"]
        assert (jobs.run_dir(run_id) / "train.log").exists()
    jobs.shutdown()


def test_a_crash_whose_message_spans_lines_is_told_in_one_line_without_losing_its_point():
    from backend.train import one_line

    # A tokenizer's own words when a GGUF's vocabulary lacks the newline token.
    assert one_line("Error while initializing BPE: Token `\n` out of vocabulary") == (
        "Error while initializing BPE: Token `\\n` out of vocabulary"
    )
    long = one_line("x" * 1000)
    assert len(long) == 300 and long.endswith("…")
