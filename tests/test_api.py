"""The stable API through gradio_client, and jobs that outlive the app that started them."""

import time

import psutil
import pytest
from gradio_client import Client

from backend.events import read_events
from tests.helpers import allow_dirs, live_group_members, start_app, stop_app, wait_for

END = ("completed", "failed", "aborted")
APP_WARM_JOBS = True  # the app as `make run` starts it: its Starts are forked from its warm job server


def wait_status(client, run_id, statuses, timeout=300):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = client.predict(run_id, api_name="/train_status")
        if status["status"] in statuses:
            return status
        time.sleep(1)
    raise AssertionError(f"run {run_id} never reached {statuses}: {status}")


def test_start_status_chat_and_abort_through_the_api(app, secret_dataset, small_model, tokenizer):
    """The plumbing of every endpoint, on the tiny model; that a run learns is tested in test_train_cli.py."""
    url, workspace = app
    client = Client(url, verbose=False)
    config = {"model": small_model, "dataset": str(secret_dataset), "max_steps": 12, "val_size": 0}
    run_id = client.predict(config, api_name="/train_start")
    assert isinstance(run_id, str) and run_id

    status = wait_status(client, run_id, END)
    assert status["status"] == "completed", status
    assert status["step"] == status["max_steps"] == 12 and status["loss"] > 0 and status["error"] is None

    reply = client.predict(run_id, "What is the secret word?", [], api_name="/chat")
    assert isinstance(reply, str)
    # The Chat tab's generation settings, optional after the history: greedy, so the same twice, and short.
    greedy = ("base", "What is the secret word?", [], "Answer in one word.", 0.0, 0.9, 8)
    base = client.predict(*greedy, api_name="/chat")
    assert base.strip() and client.predict(*greedy, api_name="/chat") == base
    assert len(tokenizer(base, add_special_tokens=False)["input_ids"]) <= 8 + 1  # re-encoding may split one

    metrics = client.predict(run_id, str(secret_dataset), api_name="/evaluate")
    assert {"eval_loss", "perplexity", "rouge1", "rouge2", "rougeL", "bleu", "exact_match"} <= metrics.keys()
    assert metrics["perplexity"] > 1 and metrics["eval_loss"] > 0

    # Once the app's warm job server is ready (it says so in the app's log), a Start is forked from it.
    wait_for(lambda: "job server: ready" in next(workspace.parent.glob("app-*.log")).read_text(), 120)
    long_id = client.predict({**config, "max_steps": 10_000}, api_name="/train_start")
    wait_status(client, long_id, ("running",))
    events = workspace / "runs" / long_id
    pid = wait_for(lambda: next((e["pid"] for e in read_events(events) if e["type"] == "start"), None), 60)
    assert "--serve" in psutil.Process(pid).cmdline()
    client.predict(long_id, api_name="/train_abort")
    assert client.predict(long_id, api_name="/train_status")["status"] == "aborted"


def test_api_errors_are_one_line_messages(app):
    client = Client(app[0], verbose=False)
    with pytest.raises(Exception, match=r"unknown option 'lerning_rate'"):
        client.predict({"lerning_rate": 1e-4}, api_name="/train_start")
    with pytest.raises(Exception, match=r"no run named 'nope'"):
        client.predict("nope", api_name="/train_status")


def test_model_info_answers_what_the_model_tab_shows(app, tiny_model):
    """Architecture, parameters, and per method the memory a run needs against free memory (tests/test_fit.py)."""
    info = Client(app[0], verbose=False).predict({"model": tiny_model, "method": "full"}, api_name="/model_info")
    assert (info["architecture"], info["parameters"], info["layers"]) == ("LlamaForCausalLM", 3_219_776, 2)
    assert [row["method"] for row in info["fit"]] == ["lora", "qlora", "full", "freeze"]
    assert info["run"]["method"] == "full" and info["run"]["total_mb"] > info["run"]["weights_mb"] > 0
    assert info["free_mb"] > 0 and isinstance(info["warning"], str)


def test_a_job_outlives_a_killed_app_and_the_restarted_app_reattaches_and_aborts_it(
    tmp_path, secret_dataset, small_model
):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, *allow_dirs(secret_dataset.parent))
    try:
        client = Client(url, verbose=False)
        config = {"model": small_model, "dataset": str(secret_dataset), "max_steps": 10_000, "val_size": 0}
        run_id = client.predict(config, api_name="/train_start")
        wait_status(client, run_id, ("running",))
    finally:
        proc.kill()  # the browser and the whole UI process are gone
        proc.wait()
    run_dir = workspace / "runs" / run_id
    step_logs = lambda: sum(1 for e in read_events(run_dir) if e["type"] == "log")  # noqa: E731
    seen = step_logs()
    deadline = time.time() + 120
    while time.time() < deadline and step_logs() < seen + 2:
        time.sleep(0.5)
    assert step_logs() >= seen + 2  # still training with no app at all
    pid = next(e for e in read_events(run_dir) if e["type"] == "start")["pid"]

    proc, url = start_app(workspace, *allow_dirs(secret_dataset.parent))
    try:
        client = Client(url, verbose=False)
        runs = client.predict(api_name="/runs_list")
        assert [(r["run_id"], r["status"]) for r in runs] == [(run_id, "running")]
        # A second run waits behind the adopted one instead of running beside it.
        queued = client.predict({**config, "max_steps": 2}, api_name="/train_start")
        assert client.predict(queued, api_name="/train_status")["queue_position"] == 1
        client.predict(queued, api_name="/train_abort")

        client.predict(run_id, api_name="/train_abort")
        status = client.predict(run_id, api_name="/train_status")
        assert status["status"] == "aborted" and status["step"] > 0
        assert live_group_members(pid) == []
    finally:
        stop_app(proc)
