"""A full disk while saving, and an abort while the model loads or the weights save, lose nothing saved.

Each test drives a real job the way the app does (JobManager: its own process group, events.jsonl),
and waits for the phase it interrupts to be announced in events.jsonl before interrupting it.
"""

import errno
import os
import resource
import time

import psutil
import pytest

from backend.checkpoints import pick_checkpoint
from backend.files import save_staged
from backend.runs.job_manager import JobManager
from tests.helpers import live_group_members, wait_for

# Below the tiny model's rank-64 adapter file (512 KB), above every small file the job writes.
FILE_SIZE_LIMIT = 256 << 10


def job_pid(jobs, run_id) -> int:
    return wait_for(lambda: next((e["pid"] for e in jobs.events(run_id) if e["type"] == "start"), None), interval=0.02)


def statuses(jobs, run_id) -> list[str]:
    return [e["message"] for e in jobs.events(run_id) if e["type"] == "status"]


def loading_model(messages: list[str]) -> bool:
    """Whether the model load was announced: "loading model (fp32)", with the precision it loads in."""
    return any(message.startswith("loading model (") for message in messages)


def limit_after_the_first_checkpoint(jobs, options: dict, limit: int, value_for_pid) -> str:
    """Start a job that checkpoints every step; once the first is written, set one of its resource limits."""
    options = {**options, "save_steps": 1, "save_total_limit": 0}
    run_id = jobs.start({**options, "val_size": 0, "logging_steps": 1})
    pid = job_pid(jobs, run_id)
    wait_for(lambda: any(e["type"] == "checkpoint" for e in jobs.events(run_id)), interval=0.02)
    value = value_for_pid(pid)
    resource.prlimit(pid, limit, (value, value))
    return run_id


def test_a_full_disk_while_saving_fails_the_run_in_one_line_and_resume_continues_from_the_last_checkpoint(
    workspace, secret_dataset, tiny_model
):
    """The disk "fills" right after the first checkpoint: the running job's file-size limit (RLIMIT_FSIZE,
    lowered with prlimit) drops to 256 KiB, below one adapter weights file (512 KB at lora_rank 64).

    Python ignores SIGXFSZ, so an over-limit write fails with EFBIG, as a write to a full disk fails
    with ENOSPC, instead of killing the job. A size limit rather than a tiny tmpfs: mounting one needs
    privileges a test machine may not have, and the limit spares the small files (events.jsonl,
    train.log), so the job can still say why it failed, which a really full disk may not allow.
    """
    jobs = JobManager(workspace)
    try:
        options = {"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 3, "lora_rank": 64}
        run_id = limit_after_the_first_checkpoint(jobs, options, resource.RLIMIT_FSIZE, lambda pid: FILE_SIZE_LIMIT)
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] != "running" and s, timeout=120)
        assert status["status"] == "failed", status
        assert "\n" not in status["error"]
        assert status["error"].startswith(f"disk full while saving to {jobs.run_dir(run_id)} (File too large)")
        assert "free space and resume" in status["error"]

        run_dir = jobs.run_dir(run_id)
        whole, notes = pick_checkpoint(run_dir, "last")  # the newest checkpoint written before the disk filled
        saved = [e["step"] for e in jobs.events(run_id) if e["type"] == "checkpoint"]
        assert whole.name == f"checkpoint-{max(saved)}" and max(saved) < 3
        assert all(note.startswith(f"skipped checkpoint-{max(saved) + 1}: ") for note in notes)  # the half-written one
        assert not (run_dir / "adapter_model.safetensors").exists()  # no final weights, not even half of them

        jobs.resume(run_id)  # space freed: the new job has no limit
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] not in ("running", "queued") and s)
        assert status["status"] == "completed" and status["step"] == 3, status
    finally:
        jobs.shutdown()


def test_final_weights_appear_whole_or_not_at_all(tmp_path):
    """A save that fails part-way (here: EFBIG, as from a full disk) leaves the old weights and no debris."""
    (tmp_path / "adapter_model.safetensors").write_bytes(b"old weights")

    def half_then_full(folder):
        (folder / "adapter_model.safetensors").write_bytes(b"half of the new")
        raise OSError(errno.EFBIG, os.strerror(errno.EFBIG))

    with pytest.raises(OSError):
        save_staged(tmp_path, half_then_full)
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == b"old weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_model.safetensors"]

    save_staged(tmp_path, lambda folder: (folder / "adapter_model.safetensors").write_bytes(b"new weights"))
    assert (tmp_path / "adapter_model.safetensors").read_bytes() == b"new weights"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["adapter_model.safetensors"]


@pytest.mark.slow
def test_abort_while_the_model_loads_ends_aborted_within_5s_with_no_process_left(workspace, secret_dataset):
    jobs = JobManager(workspace)
    try:
        run_id = jobs.start({"dataset": str(secret_dataset), "max_steps": 3, "val_size": 0})
        pid = job_pid(jobs, run_id)
        wait_for(lambda: loading_model(statuses(jobs, run_id)), interval=0.02)
        started = time.monotonic()
        jobs.abort(run_id)
        assert time.monotonic() - started < 5
        status = jobs.status(run_id)
        assert status["status"] == "aborted" and status["error"] == "aborted by the user"
        assert loading_model(statuses(jobs, run_id)[-1:])  # it was stopped in the load, before training
        assert live_group_members(pid) == []
    finally:
        jobs.shutdown()


@pytest.mark.slow
def test_abort_while_the_weights_save_ends_aborted_within_5s_and_leaves_no_half_weights(workspace, secret_dataset):
    """A full fine-tune, so the final save (a 540 MB safetensors file) lasts long enough to be interrupted."""
    jobs = JobManager(workspace)
    try:
        run_id = jobs.start(
            {"dataset": str(secret_dataset), "method": "full", "max_steps": 1, "val_size": 0, "save_steps": 0}
        )
        pid = job_pid(jobs, run_id)
        wait_for(lambda: "saving weights" in statuses(jobs, run_id), timeout=300, interval=0.01)
        started = time.monotonic()
        jobs.abort(run_id)  # the Abort button: SIGTERM to the job's group, SIGKILL 3 s later if still alive
        wait_for(lambda: live_group_members(pid) == [], timeout=5, interval=0.05)
        assert time.monotonic() - started < 5
        status = jobs.status(run_id)
        assert status["status"] == "aborted", status
        run_dir = jobs.run_dir(run_id)
        assert not (run_dir / "model.safetensors").exists()  # the half-written file stayed in the staging folder
    finally:
        jobs.shutdown()


def vm_size(pid: int) -> int:
    """The process's address space in bytes (VmSize), what RLIMIT_AS caps."""
    return psutil.Process(pid).memory_info().vms


@pytest.mark.slow
def test_a_job_out_of_memory_fails_in_one_line_and_keeps_its_checkpoint(workspace, secret_dataset):
    """Memory "runs out" right after the first checkpoint: the running job's address space is capped
    (RLIMIT_AS, lowered with prlimit) at what it holds then, so the next allocation that needs more
    fails inside torch or Python, as on a machine whose memory is gone. Unlike the kernel's OOM killer
    (a SIGKILL, see test_failures.py), this failure reaches the job, which must name it in one line.

    On the real model: a step's large tensors are the allocations that fail. The tiny model's are small,
    and the first to fail may be oneDNN's, which says only "could not create a primitive"."""
    jobs = JobManager(workspace)
    try:
        options = {"dataset": str(secret_dataset), "max_steps": 200}
        run_id = limit_after_the_first_checkpoint(jobs, options, resource.RLIMIT_AS, vm_size)
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] != "running" and s, timeout=120)
        assert status["status"] == "failed", status
        assert "\n" not in status["error"] and "Traceback" not in status["error"]
        assert status["error"].startswith("out of memory while training (per_device_train_batch_size 4, cutoff_len")
        assert status["error"].endswith("raise gradient_accumulation_steps to keep the effective batch")
        assert status["step"] < 200
        whole, _ = pick_checkpoint(jobs.run_dir(run_id), "last")  # what was saved before memory ran out stays
        assert whole.name.startswith("checkpoint-")
        assert "Traceback" in (jobs.run_dir(run_id) / "train.log").read_text()  # the details stay in the log
    finally:
        jobs.shutdown()
