"""The job manager: jobs queue one at a time, and abort kills the whole process group at once."""

import os
import threading
import time

import psutil
import pytest
import torch

from backend.events import read_events
from backend.runs.job_manager import JOB_NICENESS, JobManager
from backend.serving.chat import ChatEngine
from tests.helpers import live_group_members, wait_for


def thread_niceness(tid: int) -> int:
    return psutil.Process(tid).nice()  # on Linux a thread id names the thread as a process


def threads_in_a_new_thread() -> int:
    seen = []
    worker = threading.Thread(target=lambda: seen.append(torch.get_num_threads()))
    worker.start()
    worker.join()
    return seen[0]


@pytest.fixture()
def two_threads():
    """torch at two threads for the test, then back: under pytest-xdist a worker runs one (conftest.py),
    and a worker left at two would wait at OpenMP barriers for the core the other worker holds."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield 2
    torch.set_num_threads(before)


@pytest.fixture()
def jobs(workspace):
    manager = JobManager(workspace)
    yield manager
    manager.shutdown()


def test_queue_then_abort_stops_the_whole_group_and_marks_aborted(jobs, secret_dataset, tiny_model, two_threads):
    long_run = {"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 10_000, "val_size": 0}
    first = jobs.start(long_run)
    second = jobs.start(long_run)
    assert jobs.status(second)["status"] == "queued"

    wait_for(lambda: jobs.status(first)["step"] >= 1)
    pid = next(e for e in jobs.events(first) if e["type"] == "start")["pid"]
    assert os.getpgid(pid) == pid  # its own process group, apart from the UI's
    # Below the app's priority, every thread of it (torch's compute threads too), so the page stays quick.
    niceness = {thread_niceness(thread.id) for thread in psutil.Process(pid).threads()}
    assert niceness == {min(19, os.getpriority(os.PRIO_PROCESS, 0) + JOB_NICENESS)}  # 19 is the lowest there is

    # While it trains, model work in the app's own process (chat, evaluation) leaves the cores to it.
    usual_threads = two_threads
    chat = ChatEngine(jobs)
    with chat.model_for("base"):
        assert torch.get_num_threads() == 1
        assert threads_in_a_new_thread() == 1  # the chat generates in a thread of its own
    assert torch.get_num_threads() == usual_threads

    jobs.abort(second)
    assert jobs.status(second)["status"] == "aborted"
    assert not any(e["type"] == "start" for e in jobs.events(second))  # it never ran

    began = time.monotonic()
    jobs.abort(first)
    assert time.monotonic() - began < 5
    # Nothing of its group runs on (a SIGKILLed child may take a moment to exit; zombies waiting for
    # init to reap them do not run, and os.killpg would still find them).
    wait_for(lambda: live_group_members(pid) == [], timeout=5, interval=0.05)
    status = jobs.status(first)
    assert status["status"] == "aborted" and status["error"] == "aborted by the user"
    assert [e["type"] for e in read_events(jobs.run_dir(first))].count("end") == 1
    with chat.model_for("base"):  # nothing trains now: the usual pool
        assert torch.get_num_threads() == usual_threads and threads_in_a_new_thread() == usual_threads


def poll_until(jobs, run_id: str, stop: threading.Event) -> None:
    while not stop.is_set():
        jobs.status(run_id)


def test_a_job_aborted_in_its_first_second_ends_aborted_not_interrupted(jobs, secret_dataset, tiny_model):
    """Before its SIGTERM handler is installed a job dies of the signal without a word; it was still aborted,
    even when a page polling its status (which reaps ended jobs) notices the exit first."""
    for _ in range(3):
        run_id = jobs.start({"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 10_000})
        # Launched, not waiting for the job server's imports (then an abort would end it before it started).
        wait_for(lambda run_id=run_id: jobs.status(run_id)["status"] == "running", timeout=60, interval=0.05)
        aborted = threading.Event()
        poller = threading.Thread(target=poll_until, args=(jobs, run_id, aborted))
        poller.start()
        try:
            jobs.abort(run_id)
        finally:
            aborted.set()
            poller.join()
        status = jobs.status(run_id)
        assert (status["status"], status["error"]) == ("aborted", "aborted by the user"), status
        assert [e["type"] for e in read_events(jobs.run_dir(run_id))].count("end") == 1


def test_invalid_options_are_refused_before_anything_runs(jobs):
    from backend.errors import TuneForgeError

    with pytest.raises(TuneForgeError, match="lora_rank=0 is out of range"):
        jobs.start({"lora_rank": 0})
    assert jobs.list_runs() == []


def test_output_dir_outside_the_workspace_is_refused(jobs, tmp_path):
    from backend.errors import TuneForgeError

    with pytest.raises(TuneForgeError, match="output_dir must be a run name"):
        jobs.start({"output_dir": str(tmp_path / "elsewhere")})


def test_a_crashed_job_is_reported_failed(jobs, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"prompt": "a", "completion": "b"}\n{oops\n')
    run_id = jobs.start({"dataset": str(bad)})
    status = wait_for(lambda: (s := jobs.status(run_id))["status"] in ("failed", "completed") and s, timeout=120)
    assert status["status"] == "failed"
    assert status["error"] == (
        "bad.jsonl: line 2: invalid JSON (Expecting property name enclosed in double quotes) "
        "(turn on skip_bad_rows to skip such rows)"
    )


def test_queued_runs_start_in_order_once_the_one_before_ends(jobs, secret_dataset, tiny_model):
    short = {"model": tiny_model, "dataset": str(secret_dataset), "max_steps": 2, "val_size": 0}
    ids = [jobs.start(short) for _ in range(3)]
    assert [jobs.status(i)["queue_position"] for i in ids] == [None, 1, 2]
    assert jobs.queue() == ids[1:]
    wait_for(lambda: all(jobs.status(i)["status"] == "completed" for i in ids), timeout=300)
    spans = []
    for run_id in ids:
        events = jobs.events(run_id)
        spans.append((events[0]["time"], events[-1]["time"]))
    assert spans[0][1] <= spans[1][0] and spans[1][1] <= spans[2][0]  # never two at once
    # Every run also leaves TensorBoard event files, for tools users already know.
    assert list((jobs.run_dir(ids[0]) / "tensorboard").glob("events.out.tfevents.*"))
    listed = {r["run_id"]: r for r in jobs.list_runs()}
    assert all(listed[i]["duration_s"] > 0 and listed[i]["metric"] is None for i in ids)  # no validation: no metric


def test_run_ids_stay_apart_after_training_seeds_pythons_random():
    """Training seeds `random`; ids drawn from it after two runs in one process were the same within a second."""
    import random

    from backend.runfiles import new_run_id

    random.seed(42)
    first = new_run_id()
    random.seed(42)
    assert new_run_id() != first  # two bytes from the OS: a 1 in 65,536 chance of a clash in one second
