"""Two machines, one sweep: drivers in two workspaces sharing one study on a real PostgreSQL server.

Each "machine" is a workspace of its own and a process of its own (`python -m backend.sweep`), as on two
hosts; they share nothing but the database URL.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time

import psutil
import pytest
import yaml
from gradio_client import Client

from backend.runs.job_manager import JobManager
from backend.sweeps.study import GRACE_BEATS, HEARTBEAT_ENV, create_study, open_study
from backend.sweeps.sweep_manager import SweepManager
from backend.sweeps.sweep_spec import parse_spec
from tests.helpers import ROOT, is_live, start_app, stop_app, wait_for
from webui.tab_sweeps import trials_frame

HEARTBEAT_S = 1  # lost after GRACE_BEATS silent seconds, not a minute


def grid_spec(model: str, dataset, name: str, ranks=(2, 4, 8)) -> dict:
    base = {"model": model, "method": "lora", "dataset": str(dataset), "max_steps": 2, "eval_steps": 2,
            "logging_steps": 1, "val_size": 0.2}  # fmt: skip
    return {"base": base, "space": {"lora_rank": list(ranks)}, "sampler": "grid", "pruner": "none", "name": name}


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request, tmp_path, postgres) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'shared.db'}"
    return postgres.create_database(f"race_{os.getpid()}_{time.monotonic_ns()}")


def both_create_at_once(spec, storage: str) -> list[str]:
    start = threading.Barrier(2)
    made: list[str] = []

    def machine():
        start.wait()
        made.append(create_study(spec, storage).study_name)

    threads = [threading.Thread(target=machine) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return made


def test_two_machines_starting_the_same_new_grid_sweep_at_once_enqueue_the_grid_once(
    storage, small_model, secret_dataset
):
    """Both create the study at the same instant, five times over; the database lets one enqueue the grid."""
    for attempt in range(5):
        made = both_create_at_once(parse_spec(grid_spec(small_model, secret_dataset, f"race-{attempt}")), storage)
        study, _ = open_study(storage, f"race-{attempt}")
        assert made == [f"race-{attempt}"] * 2
        fixed = [t.system_attrs["fixed_params"] for t in study.get_trials(deepcopy=False)]
        assert fixed == [{"lora_rank": 2}, {"lora_rank": 4}, {"lora_rank": 8}], fixed


def start_driver(workspace, config, url) -> subprocess.Popen:
    workspace.mkdir(exist_ok=True)
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "backend.sweep",
            "--config",
            str(config),
            "--workspace",
            str(workspace),
            "--optuna-storage",
            url,
        ],  # fmt: skip
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, HEARTBEAT_ENV: str(HEARTBEAT_S)},
        start_new_session=True,
    )


def test_two_machines_share_a_sweep_and_one_killed_mid_trial_is_taken_up_by_the_other(
    postgres, small_model, secret_dataset, tmp_path
):
    url = postgres.create_database("shared_sweep")
    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(grid_spec(small_model, secret_dataset, "shared", ranks=(2, 4))))
    a = start_driver(tmp_path / "machine-a", config, url)
    b = start_driver(tmp_path / "machine-b", config, url)
    watcher = SweepManager(JobManager(tmp_path / "watcher"), url, resume=False)
    try:
        # Machine A's trial is training: then machine A goes down, its driver and the trial's job with it.
        def a_training():
            trials = watcher.status("shared")["trials"] if "shared" in watcher.sweep_ids() else []
            return next((t for t in trials if t["machine"].endswith(f"pid {a.pid}") and t["status"] == "running"), None)

        lost = wait_for(a_training, timeout=120, interval=0.2)
        wait_for(lambda: (tmp_path / "machine-a" / "runs" / lost["run_id"] / "events.jsonl").exists(), 60, 0.2)
        tree = [a.pid, *(p.pid for p in psutil.Process(a.pid).children(recursive=True))]
        for pid in tree:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        a.wait()
        out, err = b.communicate(timeout=240)
    finally:
        for proc in (a, b):
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
    assert b.returncode == 0, err[-3000:]
    assert not [pid for pid in tree if is_live(pid)]

    report = json.loads(out[out.index("{") :])
    assert report["status"] == "completed"
    by_status = {}
    for trial in report["trials"]:
        by_status.setdefault(trial["status"], []).append(trial)
    completed = by_status.pop("completed")
    # Every value of the grid completed exactly once; the lost attempt is kept, marked, and not counted.
    assert sorted(t["params"]["lora_rank"] for t in completed) == [2, 4]
    assert [t["number"] for t in by_status.pop("lost")] == [lost["number"]]
    assert not by_status, by_status
    again = next(t for t in completed if t["params"] == lost["params"])
    lost_row = next(t for t in report["trials"] if t["number"] == lost["number"])
    assert lost_row["error"] == (
        f"its driver ({lost['machine']}) stopped answering; trial {again['number']} runs these values again"
    )
    assert again["machine"].endswith(f"pid {b.pid}")
    assert {t["machine"] for t in completed} <= {lost["machine"], again["machine"]}
    runs_b = {p.name for p in (tmp_path / "machine-b" / "runs").iterdir()}
    runs_a = {p.name for p in (tmp_path / "machine-a" / "runs").iterdir()}
    assert {t["run_id"] for t in completed} <= runs_a | runs_b and again["run_id"] in runs_b
    assert len(runs_a) + len(runs_b) == 3  # two trials and the one lost with machine A: none ran twice
    assert report["n_trials"] == 2 and GRACE_BEATS * HEARTBEAT_S < 60

    # The app, started on the same storage URL from a third workspace, shows the same sweep and who ran what.
    workspace = tmp_path / "app"
    workspace.mkdir()
    proc, app_url = start_app(workspace, "--optuna-storage", url)
    try:
        client = Client(app_url, verbose=False)
        seen = client.predict("shared", api_name="/sweep_status")
        assert [(t["number"], t["status"], t["machine"]) for t in seen["trials"]] == [
            (t["number"], t["status"], t["machine"]) for t in report["trials"]
        ]
        assert client.predict(api_name="/sweeps_list")[0]["trials"] == "2/2"
    finally:
        stop_app(proc)
    table = trials_frame(seen)
    assert list(table["machine"]) == [t["machine"] for t in report["trials"]]
    assert f"{socket.gethostname()} pid {b.pid}" in set(table["machine"])
