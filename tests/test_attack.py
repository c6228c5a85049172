"""An attacker with a login, against every endpoint the app has: each hostile payload is refused in one line.

The endpoints are read from the app itself (every function Gradio registered: the named API and every
page event, which is as callable over HTTP), so an endpoint added tomorrow is attacked the day it is
added. Each is called in-process, as Gradio runs an HTTP call (Blocks.process_api, with the caller's
login), for each role (ada admin, alice member, vic viewer), with wrong types, None, lists for mappings,
a 10 MiB string, NaN, ±inf, huge numbers, deep nesting and workspace-internal paths. The outcome:

- a value or a one-line refusal (gr.Error, marked not to print a traceback), never another exception, and no
  traceback in the app's log;
- the audit log grows by at most a few KB per call;
- bob's run (its config, checkpoint, owner, events) and the workspace's list of runs are unchanged.

Issue #32's finding 5 (the calls that crashed) is a named test of its own below. Nothing trains here.
"""

import asyncio
import hashlib
import json
import math

import gradio as gr
import pytest
from gradio.exceptions import Error
from gradio.state_holder import SessionState

from backend.access.confine import Confinement
from backend.access.gate import Gate
from backend.access.roles import Role
from backend.events import EventLog
from backend.runs.job_manager import JobManager
from backend.runs.run_summary import write_owner
from backend.serving.chat import ChatEngine
from backend.sweeps.sweep_manager import SweepManager
from webui.app import build_app

ROLES = {"ada": Role.ADMIN, "alice": Role.MEMBER, "bob": Role.MEMBER, "vic": Role.VIEWER}
ATTACKERS = ("ada", "alice", "vic")
BIG = "x" * (10 << 20)
AUDIT_GROWTH_MAX = 4096  # bytes per call


def deep(levels: int):
    value = []
    for _ in range(levels):
        value = [value]
    return value


@pytest.fixture(scope="module")
def studio(tmp_path_factory, small_model):
    """(app, workspace, bob's run id): a confined app with four logins and a completed run of bob's."""
    folder = tmp_path_factory.mktemp("attack")
    workspace = folder / "workspace"
    users = workspace / "users.txt"
    workspace.mkdir()
    users.write_text("ada:pw:admin\nalice:pw\nbob:pw\nvic:pw:viewer\n")
    jobs = JobManager(workspace, Confinement(workspace, private=[users]))
    gate = Gate(jobs, ROLES)
    sweeps = SweepManager(jobs)
    # bob's run, as a finished job leaves it (written here, not trained: nothing in this file trains)
    run_dir = jobs.runs_dir / "bob-run"
    (run_dir / "checkpoint-2").mkdir(parents=True)
    config = {"model": small_model, "dataset": "demo_identity", "task": "sft", "method": "lora", "max_steps": 2}
    (run_dir / "run.yaml").write_text(json.dumps(config))
    (run_dir / "config.yaml").write_text(json.dumps(config))
    (run_dir / "checkpoint-2" / "adapter_model.safetensors").write_bytes(b"\0" * 64)
    write_owner(run_dir, "bob")
    events = EventLog(run_dir)
    events.emit("start", pid=1, config=config)
    events.emit("end", status="completed", eval_loss=1.0)
    app = build_app(jobs, ChatEngine(jobs), sweeps, gate)
    yield app, workspace, "bob-run"
    sweeps.shutdown()
    jobs.shutdown()


def endpoints(app) -> list:
    """Every function the app registered, named as its API calls it."""
    return list(app.fns.values())


_LOOP = asyncio.new_event_loop()
_SESSIONS: dict = {}


def call(app, fn, inputs: list, user: str):
    """One call as Gradio runs an HTTP one: its payload preprocessed by the components, as that login, in
    that login's one session (as a browser tab keeps one)."""
    state = _SESSIONS.get((id(app), user)) or _SESSIONS.setdefault((id(app), user), SessionState(app))
    return _LOOP.run_until_complete(app.process_api(fn, inputs, state=state, request=gr.Request(username=user)))


def hostile_payloads(workspace, run_id) -> dict:
    internal = [workspace / "audit.jsonl", workspace / "users.txt", workspace / "runs" / run_id / "run.yaml",
                workspace / "sweeps", workspace / "runs" / run_id]  # fmt: skip
    options = {
        "output_dir": run_id,
        "dataset": str(internal[0]),
        "learning_rate": math.nan,
        "identity_name": BIG,
        "max_steps": 10**30,
        "model": str(internal[4]),
    }
    return {
        "none": None,
        "list": [1, 2],
        "big": BIG,
        "nan": math.nan,
        "inf": math.inf,
        "-inf": -math.inf,
        "huge": 10**30,
        "negative": -(10**9),
        "deep": deep(64),
        "dict": options,
        **{f"internal-{i}": str(path) for i, path in enumerate(internal)},
    }


def snapshot(folder) -> dict:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.rglob("*")
            if p.is_file()}  # fmt: skip


def test_every_endpoint_refuses_every_hostile_payload_in_one_line_for_every_role(studio, capfd):
    app, workspace, run_id = studio
    audit = workspace / "audit.jsonl"
    before, runs = snapshot(workspace / "runs" / run_id), sorted(p.name for p in (workspace / "runs").iterdir())
    payloads = hostile_payloads(workspace, run_id)
    problems, calls = [], 0
    for fn in endpoints(app):
        tried = {"no input": []} if not fn.inputs else payloads
        for user in ATTACKERS:
            for kind, payload in tried.items():
                size = audit.stat().st_size if audit.exists() else 0
                where = f"/{fn.api_name} as {user} with {kind}"
                try:
                    call(app, fn, [payload] * len(fn.inputs), user)
                except Error as refusal:
                    if "\n" in str(refusal) or len(str(refusal)) > 1000:
                        problems.append(f"{where}: a refusal of {len(str(refusal))} characters over lines")
                    if refusal.print_exception:  # Gradio's queue would print its traceback in the app's log
                        problems.append(f"{where}: a refusal that prints a traceback: {str(refusal)[:100]}")
                except Exception as exc:  # noqa: BLE001 - every one is a finding, listed together
                    problems.append(f"{where}: {type(exc).__name__}: {str(exc)[:200]}")
                calls += 1
                grown = (audit.stat().st_size if audit.exists() else 0) - size
                if grown > AUDIT_GROWTH_MAX:
                    problems.append(f"{where}: the audit log grew {grown} bytes")
    assert not problems, "\n".join(problems)
    assert calls > 1000
    assert snapshot(workspace / "runs" / run_id) == before
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == runs
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err, (log.out + log.err)[-3000:]


def test_finding_5_the_calls_that_crashed_are_refused_in_one_line_and_audited(studio, capfd):
    app, workspace, run_id = studio
    api = {fn.api_name: fn for fn in endpoints(app)}
    chat = lambda **changed: [{**{"target": run_id, "message": "hi", "history": [], "system_prompt": "",  # noqa: E731
                                  "temperature": 0.7, "top_p": 0.9, "max_new_tokens": 8, "images": None}, **changed}[k]
                              for k in ("target", "message", "history", "system_prompt", "temperature", "top_p",
                                        "max_new_tokens", "images")]  # fmt: skip
    cases = [
        ("train_start", [None], "alice", "config"),
        ("train_start", [[{"model": "default"}]], "alice", "config"),
        ("train_start", [{"model": "m" * (10 << 20)}], "alice", "characters"),
        ("train_start", [{"identity_name": "n" * (10 << 20)}], "alice", "characters"),
        ("train_start", [{"identity_name": "n" * 5000}], "ada", "identity_name: 5,000 characters"),
        ("export", [run_id, [1, 2]], "bob", "options"),
        (
            "chat",
            chat(history=[{"role": "user", "content": [{"type": "image_url", "image_url": "x"}]}]),
            "vic",
            "history",
        ),
        ("chat", chat(max_new_tokens=10**9), "vic", "max_new_tokens"),
        ("on_classify", [run_id, "is this spam?"], "vic", "vic is a viewer"),
        ("on_classify", [run_id, "is this spam?"], "bob", "not a classification run"),
        ("on_classify", [run_id, None], "bob", "type some text"),
    ]
    for user in (
        "bob",
        "vic",
    ):  # the run lists filled, as a page does when it opens (Gradio checks a pick against them)
        for fn in endpoints(app):
            if fn.name in ("runs", "on_refresh"):
                call(app, fn, [None], user)
    for endpoint, inputs, user, match in cases:
        size = (workspace / "audit.jsonl").stat().st_size if (workspace / "audit.jsonl").exists() else 0
        with pytest.raises(Error, match=match) as refusal:
            call(app, api[endpoint], inputs, user)
        assert "\n" not in str(refusal.value), endpoint
        with open(workspace / "audit.jsonl", "rb") as f:
            f.seek(size)
            lines = [json.loads(line) for line in f.read().splitlines()]
        assert [(line["user"], line["result"][:8]) for line in lines] == [(user, "refused:")], (endpoint, lines)
    assert sorted(p.name for p in (workspace / "runs").iterdir()) == [run_id]  # not a 31 MB run folder either
    log = capfd.readouterr()
    assert "Traceback" not in log.out + log.err
