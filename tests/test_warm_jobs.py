"""Jobs forked from the warm job server: the same job as a new process, in its own group, without the imports."""

import os
import re
import signal

import psutil
import pytest

from backend.runfiles import WARM_JOBS_ENV
from backend.runs import warm_jobs
from backend.runs.job_manager import JobManager
from tests.helpers import finish, live_group_members, wait_for

COLD = "(a new process, not the warm job server"


@pytest.fixture(scope="module")
def ready_server(tmp_path_factory):
    """This test process's job server, imports done (one per process, as in the app)."""
    JobManager(tmp_path_factory.mktemp("warm-up")).warm_up()
    assert warm_jobs.wait_until_ready(300), "the job server never said it was ready"


@pytest.fixture()
def jobs(workspace):
    manager = JobManager(workspace)
    yield manager
    manager.shutdown()


def job_pid(jobs, run_id) -> int:
    return wait_for(lambda: next((e["pid"] for e in jobs.events(run_id) if e["type"] == "start"), None), 60)


def long_run(small_model, secret_dataset) -> dict:
    return {"model": small_model, "dataset": str(secret_dataset), "max_steps": 10_000, "val_size": 0}


def test_a_forked_job_runs_in_its_own_group_aborts_and_reports_its_exit(
    ready_server, jobs, small_model, secret_dataset
):
    run_id = jobs.start(long_run(small_model, secret_dataset))
    pid = job_pid(jobs, run_id)
    process = psutil.Process(pid)
    assert "--serve" in process.cmdline() and process.ppid() != os.getpid()  # the server's child, not ours
    assert os.getpgid(pid) == pid and os.getsid(pid) == pid  # abort signals its own group, nothing of the app
    wait_for(lambda: jobs.status(run_id)["step"] >= 1)
    os.kill(pid, signal.SIGKILL)  # the exit code reaches the manager through the server
    status = wait_for(lambda: (s := jobs.status(run_id))["status"] != "running" and s, timeout=30)
    assert status["status"] == "interrupted", status
    assert status["error"].startswith("the job was killed by SIGKILL"), status

    short = jobs.start({**long_run(small_model, secret_dataset), "max_steps": 2})
    abort_me = jobs.start(long_run(small_model, secret_dataset))  # queued behind it
    finish(jobs, short, 120)
    log = (jobs.run_dir(short) / "train.log").read_text()
    assert log.startswith("$ ") and "--config" in log.splitlines()[0]  # the command it stands for
    assert COLD not in log and "completed: " in log
    pid = job_pid(jobs, abort_me)
    jobs.abort(abort_me)
    assert jobs.status(abort_me)["status"] == "aborted"
    wait_for(lambda: not live_group_members(pid), 10)


def test_a_run_that_loads_bitsandbytes_starts_as_a_new_process(ready_server, jobs, small_model, secret_dataset):
    """The server imported peft with bitsandbytes hidden, so it cannot be a 4-bit run."""
    run_id = jobs.start({**long_run(small_model, secret_dataset), "method": "qlora", "max_steps": 1})
    log = jobs.run_dir(run_id) / "train.log"
    assert f"{COLD}: the run loads bitsandbytes)" in log.read_text()
    pid = job_pid(jobs, run_id)
    assert "--serve" not in psutil.Process(pid).cmdline()
    jobs.abort(run_id)


def test_switched_off_every_job_is_a_new_process(ready_server, jobs, small_model, secret_dataset, monkeypatch):
    monkeypatch.setenv(WARM_JOBS_ENV, "0")
    run_id = jobs.start({**long_run(small_model, secret_dataset), "max_steps": 1})
    assert psutil.Process(job_pid(jobs, run_id)).cmdline()[-2:] == ["--config", str(jobs.run_dir(run_id) / "run.yaml")]
    finish(jobs, run_id, 120)


def test_jobs_go_on_when_their_server_ends_and_are_followed_by_pid(ready_server, jobs, small_model, secret_dataset):
    run_id = jobs.start(long_run(small_model, secret_dataset))
    pid = job_pid(jobs, run_id)
    assert "--serve" in psutil.Process(pid).cmdline()
    warm_jobs._server.close()  # as when the server is killed: its exit codes are gone with it
    wait_for(lambda: jobs.status(run_id)["step"] >= 2)
    assert jobs.status(run_id)["status"] == "running"
    jobs.abort(run_id)
    assert jobs.status(run_id)["status"] == "aborted"
    wait_for(lambda: not live_group_members(pid), 10)
    # The next Start starts a new server, and waits for its imports rather than doing them beside it: the
    # run reads as starting meanwhile, not in line (a run started behind it is first in line), then is a
    # fork of the new server, and its log says how long it waited.
    again = jobs.start({**long_run(small_model, secret_dataset), "max_steps": 1})
    behind = jobs.start({**long_run(small_model, secret_dataset), "max_steps": 1})
    assert warm_jobs._server is not None and warm_jobs._server.alive and not warm_jobs._server.ready.is_set()
    starting = jobs.status(again)
    assert starting["phase"] == warm_jobs.STARTING_PHASE, starting
    assert starting["status"] == "queued" and starting["queue_position"] is None
    assert jobs.status(behind)["queue_position"] == 1 and jobs.queue() == [behind]
    assert "--serve" in psutil.Process(job_pid(jobs, again)).cmdline()
    finish(jobs, again, 120)
    finish(jobs, behind, 120)
    log = (jobs.run_dir(again) / "train.log").read_text()
    assert COLD not in log and re.search(r"\(waited \d+\.\d s for the warm job server's imports\)", log), log


def test_a_server_that_ends_before_it_is_ready_is_not_started_again(monkeypatch):
    """Where forking is unsafe (outside Linux, a CUDA build of torch) the server says why and ends: jobs then
    start as new processes, without a new server's imports at every launch."""
    monkeypatch.setattr(warm_jobs, "_server", None)
    monkeypatch.setattr(warm_jobs, "_given_up", False)
    monkeypatch.setattr(warm_jobs, "JOB_MODULE", "json.tool")  # `python -m json.tool --serve` ends at once
    env = dict(os.environ)
    assert warm_jobs.warm_server(env) == "it is starting"  # what the job's train.log says of its new process
    ended = warm_jobs._server
    wait_for(lambda: not ended.alive, 30)
    assert warm_jobs.warm_server(env) == "it ended before it was ready (the app's log says why)"
    assert warm_jobs._given_up and warm_jobs._server is ended and not ended.ready.is_set()
    assert warm_jobs.warm_server(env).startswith("it ended before") and warm_jobs._server is ended  # none again
