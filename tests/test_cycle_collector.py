"""The studio's processes keep what their imports built out of Python's cycle collections, and never leave
the collector off (backend.cycle_collector). bench/cycle_collector.py measures what that saves.

Each process is watched from outside our code: a sitecustomize on its PYTHONPATH records, at the first
collection that runs once anything is frozen, how much is and whether the collector is on.
"""

import gc
import json
import os
import subprocess
import sys

from backend.cycle_collector import settle
from tests.helpers import ROOT, start_app, stop_app, wait_for, write_config

WATCH = """
import gc, json, os

def _after(phase, info):
    if phase == "stop" and gc.get_freeze_count():
        gc.callbacks.remove(_after)
        with open(os.environ["CYCLE_WATCH_OUT"], "w") as f:
            json.dump({"frozen": gc.get_freeze_count(), "enabled": gc.isenabled()}, f)

gc.callbacks.append(_after)
"""

# What torch and transformers (a job) or gradio (the app) leave behind: 580,000-870,000 objects.
IMPORTS_KEPT = 300_000


def watched(tmp_path) -> tuple[dict, object]:
    (tmp_path / "watch").mkdir()
    (tmp_path / "watch" / "sitecustomize.py").write_text(WATCH)
    out = tmp_path / "collector.json"
    path = os.pathsep.join(p for p in (str(tmp_path / "watch"), os.environ.get("PYTHONPATH")) if p)
    return {"PYTHONPATH": path, "CYCLE_WATCH_OUT": str(out)}, out


def test_a_job_trains_with_its_imports_out_of_the_collectors_walk_and_the_collector_on(tmp_path, small_model):
    env, out = watched(tmp_path)
    config = write_config(
        tmp_path / "run.yaml",
        model=small_model,
        dataset="demo_identity",
        output_dir=str(tmp_path / "run"),
        max_steps=1,
        val_size=0,
        save_steps=0,
    )
    command = [sys.executable, "-m", "backend.train", "--config", str(config)]
    result = subprocess.run(command, cwd=ROOT, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    seen = json.loads(out.read_text())
    assert seen["enabled"] and seen["frozen"] > IMPORTS_KEPT, seen


def test_the_app_serves_with_gradio_out_of_the_collectors_walk_and_the_collector_on(tmp_path):
    env, out = watched(tmp_path)
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc, _ = start_app(workspace, env=env)
    try:
        wait_for(out.exists, timeout=60)
    finally:
        stop_app(proc)
    seen = json.loads(out.read_text())
    assert seen["enabled"] and seen["frozen"] > IMPORTS_KEPT, seen


def test_code_called_in_another_process_leaves_that_process_collector_alone():
    """A test's in-process run calls the job's run(), which settles: without the job's own hold() at its
    start, this process's collector keeps its state and nothing of it is frozen."""
    frozen = gc.get_freeze_count()
    settle()
    assert gc.isenabled() and gc.get_freeze_count() == frozen
