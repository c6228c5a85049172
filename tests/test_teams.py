"""Several people, one studio: roles and ownership enforced on every endpoint, private uploads,
the queue limit, code-running options, and the audit trail; each called with gradio_client as that login.

One app serves the whole story. Its auth file makes ada an admin, alice and bob members (bob's
line names no role, so he is one by default) and vic a viewer. Runs use the tiny model.
"""

import json
import time
import urllib.parse

import httpx
import pytest
from gradio_client import Client, handle_file

from backend.access.gate import Gate
from backend.access.roles import Person, Role
from backend.errors import TuneForgeError
from backend.runs.job_manager import JobManager
from tests.helpers import allow_dirs, start_app, stop_app, wait_for

LOGINS = {
    "ada": ("pw-ada", "admin"),
    "alice": ("pw-alice", "member"),
    "bob": ("pw-bob", None),
    "vic": ("pw-vic", "viewer"),
}
END = ("completed", "failed", "aborted")
APP_WARM_JOBS = True  # jobs are forked from the app's job server: a few tiny runs start in a second each


@pytest.fixture(scope="module")
def team(tmp_path_factory, default_model_dir, tiny_model_dir, secret_dataset):
    """(url, workspace, clients by login) of an app with four logins and a queue limit of one run a person."""
    folder = tmp_path_factory.mktemp("team")
    workspace = folder / "workspace"
    workspace.mkdir()
    auth = folder / "users.txt"
    auth.write_text("".join(f"{u}:{p}" + (f":{r}" if r else "") + "\n" for u, (p, r) in LOGINS.items()))
    proc, url = start_app(
        workspace, "--auth-file", str(auth), "--max-queued-per-person", "1", *allow_dirs(secret_dataset.parent),
        warm_jobs=True,
    )  # fmt: skip
    try:
        clients = {user: Client(url, auth=(user, password), verbose=False) for user, (password, _) in LOGINS.items()}
        yield url, workspace, clients
    finally:
        stop_app(proc)


def refused(client, *args, api_name: str, match: str) -> None:
    with pytest.raises(Exception, match=match) as caught:
        client.predict(*args, api_name=api_name)
    assert "Traceback" not in str(caught.value)


def status(client, run_id) -> dict:
    return client.predict(run_id, api_name="/train_status")


def wait_status(client, run_id, statuses, timeout=180) -> dict:
    return wait_for(lambda: (s := status(client, run_id))["status"] in statuses and s, timeout)


def audit(workspace) -> list[dict]:
    return [json.loads(line) for line in (workspace / "audit.jsonl").read_text().splitlines()]


def test_each_role_against_each_endpoint_with_ownership_uploads_queue_limit_and_audit(
    team, small_model, secret_dataset
):
    url, workspace, c = team
    ada, alice, bob, vic = c["ada"], c["alice"], c["bob"], c["vic"]
    tiny = {"model": small_model, "val_size": 0, "logging_steps": 1}

    # ---- uploads: a member's go to their own folder; a viewer cannot upload ------------------------------
    upload = alice.predict(handle_file(str(secret_dataset)), api_name="/on_upload")[0]
    assert upload == str(workspace / "uploads" / "alice" / secret_dataset.name)
    refused(vic, handle_file(str(secret_dataset)), api_name="/on_upload", match="vic is a viewer")

    # ---- starts, and the queue limit (one a person here; 3 by default) ---------------------------------
    long_run = ada.predict({**tiny, "dataset": str(secret_dataset), "max_steps": 10_000, "save_steps": 2},
                           api_name="/train_start")  # fmt: skip
    wait_for(lambda: any((workspace / "runs" / long_run).glob("checkpoint-*")), 120)
    run_a = alice.predict({**tiny, "dataset": upload, "max_steps": 4}, api_name="/train_start")
    assert status(vic, run_a)["status"] == "queued"
    refused(alice, {**tiny, "dataset": upload, "max_steps": 4}, api_name="/train_start",
            match="alice already has 1 runs queued \\(at most 1 a person\\)")  # fmt: skip
    refused(vic, {**tiny, "dataset": str(secret_dataset)}, api_name="/train_start", match="vic is a viewer")
    refused(bob, {**tiny, "dataset": upload}, api_name="/train_start",
            match="another person's upload is private; its owner can save it as a named dataset")  # fmt: skip
    run_b = bob.predict({**tiny, "dataset": str(secret_dataset), "max_steps": 4}, api_name="/train_start")

    # ---- code from a model: an admin's call, and only where the owner launched with --allow-remote-code ----
    remote = {**tiny, "dataset": str(secret_dataset), "trust_remote_code": True}
    refused(ada, remote, api_name="/train_start", match="launching with --allow-remote-code")
    for member in (alice, bob):
        refused(member, remote, api_name="/train_start", match="only an admin may run code")
    refused(vic, remote, api_name="/train_start", match="vic is a viewer")

    # ---- ownership: read by all, changed by the owner or an admin ---------------------------------------
    owners = {row["run_id"]: row["owner"] for row in vic.predict(api_name="/runs_list")}
    assert owners == {long_run: "ada", run_a: "alice", run_b: "bob"}
    assert status(vic, run_a)["owner"] == "alice"
    refused(bob, run_a, api_name="/train_abort", match=f"run {run_a} belongs to alice; only its owner or an admin")
    refused(vic, run_a, api_name="/train_abort", match="vic is a viewer")
    refused(alice, long_run, api_name="/train_resume", match=f"run {long_run} belongs to ada")
    refused(vic, long_run, api_name="/train_resume", match="vic is a viewer")
    ada.predict(run_b, api_name="/train_abort")  # an admin may stop anyone's run
    assert status(bob, run_b)["status"] == "aborted"

    # ---- sweeps: started by a member, aborted only by its owner or an admin ---------------------------------
    base = {**tiny, "dataset": str(secret_dataset), "max_steps": 2, "val_size": 0.25}
    spec = {"base": base, "space": {"lora_rank": [2]}}
    refused(vic, spec, api_name="/sweep_start", match="vic is a viewer")
    sweep = alice.predict(spec, api_name="/sweep_start")
    assert vic.predict(sweep, api_name="/sweep_status")["owner"] == "alice"
    refused(bob, sweep, api_name="/sweep_abort", match="this belongs to alice; only its owner or an admin")
    alice.predict(sweep, api_name="/sweep_abort")
    assert vic.predict(sweep, api_name="/sweep_status")["status"] == "aborted"

    # ---- the long run: its owner stops it, resumes it and stops it again; alice's run then trains -----------
    ada.predict(long_run, api_name="/train_abort")
    assert ada.predict(long_run, api_name="/train_resume") == long_run
    ada.predict(long_run, api_name="/train_abort")
    assert wait_status(vic, run_a, END)["status"] == "completed"

    # ---- a completed run: all may chat; members evaluate; only the owner (or an admin) exports -------------
    assert isinstance(vic.predict(run_a, "Hi", [], "", 0.0, 0.9, 4, api_name="/chat"), str)
    refused(vic, run_a, "", api_name="/evaluate", match="vic is a viewer")
    refused(bob, run_a, upload, api_name="/evaluate", match="another person's upload is private")
    refused(bob, run_a, "", api_name="/evaluate", match="another person's upload is private")  # the run's own data
    assert alice.predict(run_a, upload, api_name="/evaluate")["perplexity"] > 1  # her own run, on her own data
    refused(bob, run_a, {"kind": "adapter"}, api_name="/export", match=f"run {run_a} belongs to alice")
    refused(vic, run_a, {"kind": "adapter"}, api_name="/export", match="vic is a viewer")
    exported = alice.predict(run_a, {"kind": "adapter"}, api_name="/export")
    assert exported["zip"].endswith(".zip")
    # Serving is the owner's too, and with logins a served run needs an API key (the Export tab's button,
    # whose run list each client first fills, as a page does when it opens).
    bob.predict(api_name="/runs")
    alice.predict(api_name="/runs")
    assert "belongs to alice" in bob.predict(run_a, "sk-bob", api_name="/on_serve")
    assert "give the server an API key first" in alice.predict(run_a, "", api_name="/on_serve")

    # ---- a file URL: neither someone's upload nor an export can be fetched by naming its path ---------------
    with httpx.Client(base_url=url, timeout=30) as browser:
        assert browser.post("login", data={"username": "vic", "password": "pw-vic"}).status_code == 200
        for path in (upload, exported["zip"], str(workspace / "audit.jsonl")):
            for route in ("gradio_api/file=", "file="):
                answer = browser.get(route + urllib.parse.quote(path))
                assert answer.status_code in (403, 404), (route, path, answer.status_code)

    # ---- the audit trail: every state-changing call and refusal, one line each --------------------------------
    lines = audit(workspace)
    assert all({"time", "user", "action", "run_id", "result"} <= line.keys() for line in lines)
    said = {(line["user"], line["action"], line["run_id"], line["result"].split(":")[0]) for line in lines}
    assert {
        ("alice", "dataset_upload", None, "ok"),
        ("vic", "dataset_upload", None, "refused"),
        ("ada", "train_start", long_run, "ok"),
        ("alice", "train_start", run_a, "ok"),
        ("alice", "train_start", None, "refused"),
        ("bob", "train_abort", run_a, "refused"),
        ("ada", "train_abort", run_b, "ok"),
        ("alice", "train_resume", long_run, "refused"),
        ("ada", "train_resume", long_run, "ok"),
        ("alice", "sweep_start", None, "ok"),
        ("bob", "sweep_abort", None, "refused"),
        ("alice", "export", run_a, "ok"),
        ("bob", "export", run_a, "refused"),
        ("vic", "evaluate", run_a, "refused"),
        ("alice", "evaluate", run_a, "ok"),
    } <= said
    uploads = [line for line in lines if line["action"] == "dataset_upload" and line["result"] == "ok"]
    assert [line.get("file") for line in uploads] == [secret_dataset.name]  # which file, not only that one came
    queue_refusal = next(line for line in lines if line["user"] == "alice" and line["result"].startswith("refused"))
    assert queue_refusal["result"] == "refused: alice already has 1 runs queued (at most 1 a person); " \
        "wait for one to start, or abort one"  # fmt: skip
    assert not any(line["action"] in ("train_status", "runs_list", "chat") for line in lines)  # reads are not logged

    # ---- the audit log in the Runs tab: shown to an admin only ------------------------------------------------
    # (An accordion is layout, not a value: a client gets the table alone, the page the accordion's visibility too.)
    assert vic.predict(api_name="/on_audit")["data"] == []
    table = ada.predict(api_name="/on_audit")
    assert table["headers"] == ["time", "user", "action", "run_id", "result"]
    assert ["alice", "export", run_a, "ok"] in [row[1:] for row in table["data"]]


def test_the_page_says_who_is_signed_in_shows_owners_and_the_audit_log_to_admins_only(team):
    """In a browser, after the story above: the identity line, the owner column, and the audit log for ada only."""
    from playwright.sync_api import expect, sync_playwright

    from tests.helpers import CHROMIUM_ARGS

    url, _, _ = team
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        for user, role, sees_audit in (("vic", "viewer", False), ("ada", "admin", True)):
            context = browser.new_context(viewport={"width": 1400, "height": 1000})
            page = context.new_page()
            assert page.request.post(url + "login", form={"username": user, "password": LOGINS[user][0]}).ok
            page.goto(url)
            expect(page.locator("#signed-in")).to_contain_text(f"Signed in as {user} ({role})", timeout=60_000)
            page.get_by_role("tab", name="Runs").click()
            expect(page.locator("#runs-history")).to_contain_text("alice", timeout=30_000)  # the owner column
            if sees_audit:
                page.locator("#audit-accordion").get_by_text("Audit log").click()
                expect(page.locator("#audit-log")).to_contain_text("refused: run", timeout=30_000)
            else:
                expect(page.locator("#audit-accordion")).to_have_count(0)  # not rendered, and never filled for a viewer
            context.close()
        browser.close()


def test_code_running_options_need_an_admin_and_the_owners_flag(workspace):
    """The allowed side, which the app above (launched without --allow-remote-code) cannot show."""
    jobs = JobManager(workspace)
    remote = {"trust_remote_code": True}
    allowed = Gate(jobs, {"ada": Role.ADMIN, "alice": Role.MEMBER}, allow_remote_code=True)
    allowed.check_options(Person("ada", Role.ADMIN), remote)
    with pytest.raises(TuneForgeError, match="only an admin may run code that is not the studio's own"):
        allowed.check_options(Person("alice", Role.MEMBER), remote)
    # Without logins the person at the machine owns it, and decides for themselves.
    Gate(jobs).check_options(Gate(jobs).person(None), remote)
    assert Gate(jobs).person(None) == Person(None, Role.ADMIN)
    with pytest.raises(TuneForgeError, match="sign in first"):
        allowed.person(None)  # a call whose login is unknown is refused, never taken for an admin's
    jobs.shutdown()


def test_without_logins_runs_have_no_owner_and_the_audit_says_local(workspace, small_model, secret_dataset):
    jobs = JobManager(workspace)
    gate = Gate(jobs)
    run_id = gate.start(None, {"model": small_model, "dataset": str(secret_dataset), "max_steps": 1, "val_size": 0})
    assert jobs.status(run_id)["owner"] is None
    gate.abort(None, run_id)  # no owner, and the one person is an admin
    assert jobs.status(run_id)["status"] == "aborted"
    abort, start = gate.audit.lines()  # newest first
    assert (start["user"], start["action"], start["run_id"], start["result"]) == ("local", "train_start", run_id, "ok")
    assert (abort["user"], abort["action"], abort["result"]) == ("local", "train_abort", "ok")
    assert time.strptime(start["time"], "%Y-%m-%dT%H:%M:%SZ")
    jobs.shutdown()
