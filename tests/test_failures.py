"""Failures end a run visibly, with one line that says what happened, and keep what was saved."""

import math
import os
import signal

import pytest
from transformers import TrainerControl, TrainerState, TrainingArguments

from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.jobs import JobManager
from backend.recipe import EventsCallback
from tests.test_jobs import wait_for


@pytest.mark.parametrize("loss", [math.nan, math.inf])
def test_a_non_finite_loss_stops_training_with_a_hint(tmp_path, loss):
    callback = EventsCallback(EventLog(tmp_path), tmp_path)
    state = TrainerState()
    state.global_step = 7
    args = TrainingArguments(output_dir=str(tmp_path), learning_rate=0.5, report_to="none")
    with pytest.raises(TuneForgeError, match=r"the loss became (nan|inf) at step 7; lower learning_rate \(now 0.5\)"):
        callback.on_log(args, state, TrainerControl(), logs={"loss": loss})


def test_a_job_killed_by_the_os_is_failed_with_the_signal_and_keeps_its_log(workspace, secret_dataset):
    jobs = JobManager(workspace)
    try:
        run_id = jobs.start({"dataset": str(secret_dataset), "max_steps": 10_000, "val_size": 0})
        wait_for(lambda: jobs.status(run_id)["step"] >= 1)
        pid = next(e for e in jobs.events(run_id) if e["type"] == "start")["pid"]
        os.kill(pid, signal.SIGKILL)  # what the kernel's OOM killer does
        status = wait_for(lambda: (s := jobs.status(run_id))["status"] == "failed" and s, timeout=30)
        assert status["error"].startswith("the job was killed by SIGKILL (the system may have run out of memory)")
        assert "step 1/" in (jobs.run_dir(run_id) / "train.log").read_text()
    finally:
        jobs.shutdown()
