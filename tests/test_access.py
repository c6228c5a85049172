"""Logins: --auth and --auth-file are enforced, and --share never runs without a password."""

import re
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from gradio_client import Client

from backend.access.roles import Role
from backend.errors import TuneForgeError
from tests.helpers import start_app, stop_app
from webui.access import SHARE_USER, credentials, roles_of


def test_share_without_auth_generates_a_strong_password_shown_once():
    pairs, notes = credentials(None, None, share=True, host="127.0.0.1")
    ((user, password, role),), (note,) = pairs, notes
    assert user == SHARE_USER and len(password) >= 20 and password in note
    assert role is Role.ADMIN  # the owner's own login
    assert credentials(None, None, share=True, host="127.0.0.1")[0][0][1] != password


def test_auth_file_lines_their_roles_and_their_errors(tmp_path):
    good = tmp_path / "users.txt"
    good.write_text("# team\nalice:s3cret\n\nbob:hunter2:with-colon\ncarol:pw:viewer\ndan:a:b:admin\n")
    logins, notes = credentials(None, str(good), False, "127.0.0.1")
    assert notes == []
    assert [tuple(login) for login in logins] == [
        ("alice", "s3cret", Role.MEMBER),  # a line without a role is a member's
        ("bob", "hunter2:with-colon", Role.MEMBER),  # a colon in a password that names no role stays in it
        ("carol", "pw", Role.VIEWER),
        ("dan", "a:b", Role.ADMIN),
    ]
    assert roles_of(logins) == {"alice": Role.MEMBER, "bob": Role.MEMBER, "carol": Role.VIEWER, "dan": Role.ADMIN}
    assert roles_of([]) is None  # no logins: one person, an admin
    (owner,), _ = credentials("eve:pw", None, False, "127.0.0.1")
    assert owner.role is Role.ADMIN  # --auth is the owner's login unless it names a role
    assert credentials("eve:pw:viewer", None, False, "127.0.0.1")[0][0].role is Role.VIEWER
    bad = tmp_path / "bad.txt"
    bad.write_text("alice:s3cret\nnocolon\n")
    with pytest.raises(TuneForgeError, match="bad.txt: line 2: expected user:password or user:password:role"):
        credentials(None, str(bad), False, "127.0.0.1")
    with pytest.raises(TuneForgeError, match="--auth: expected user:password"):
        credentials("alice", None, False, "127.0.0.1")
    with pytest.raises(TuneForgeError, match="--auth: expected user:password"):
        credentials(":pw:viewer", None, False, "127.0.0.1")  # a role and a password, but no user


def test_open_host_without_auth_is_warned_about():
    assert credentials(None, None, False, "0.0.0.0")[1][0].startswith("warning: listening on 0.0.0.0 without --auth")
    assert credentials("a:b", None, False, "0.0.0.0")[1] == []


def test_auth_is_enforced_over_http_and_the_api(tmp_path, default_model_dir):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, "--auth", "alice:s3cret")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "config", timeout=10)
        assert refused.value.code == 401
        wrong = urllib.parse.urlencode({"username": "alice", "password": "nope"}).encode()
        with pytest.raises(urllib.error.HTTPError):
            urllib.request.urlopen(url + "login", data=wrong, timeout=10)
        client = Client(url, auth=("alice", "s3cret"), verbose=False)
        with pytest.raises(Exception, match="no run named 'x'"):
            client.predict("x", api_name="/train_status")
    finally:
        stop_app(proc)


def test_share_without_a_tunnel_keeps_serving_locally_behind_the_generated_password(tmp_path, default_model_dir):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    # A share server that refuses connections: what an offline machine gets, without touching the network.
    proc, url = start_app(workspace, "--share", env={"GRADIO_SHARE_SERVER_ADDRESS": "127.0.0.1:9"})
    log = tmp_path / f"app-{url.rsplit(':', 1)[1].strip('/')}.log"
    try:
        deadline = time.time() + 90
        while time.time() < deadline and "--share: no public link" not in log.read_text():
            time.sleep(0.5)
        text = log.read_text()
        assert "--share: no public link (offline, or the share tunnel could not start); serving locally only" in text
        password = re.search(r"log in as 'tuneforge' with password (\S+) \(shown only now\)", text).group(1)
        assert proc.poll() is None
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(url + "config", timeout=10)
        assert refused.value.code == 401
        client = Client(url, auth=(SHARE_USER, password), verbose=False)
        assert client.predict(api_name="/runs_list") == []
    finally:
        stop_app(proc)


def test_failed_logins_are_rate_limited_on_the_running_app(tmp_path, default_model_dir):
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, "--auth", "alice:s3cret")
    try:
        codes = []
        for password in ["a", "b", "c", "d", "e", "s3cret"]:
            form = urllib.parse.urlencode({"username": "alice", "password": password}).encode()
            try:
                codes.append(urllib.request.urlopen(url + "login", data=form, timeout=10).status)
            except urllib.error.HTTPError as exc:
                codes.append(exc.code)
        assert codes == [400] * 5 + [429]
    finally:
        stop_app(proc)


def test_files_outside_what_the_app_hands_out_cannot_be_downloaded_and_uploads_have_a_size_limit(
    tmp_path, default_model_dir
):
    """No allowed_paths, no flagging, no file browser: Gradio's file route serves neither the
    workspace (run logs, configs, uploads) nor the rest of the disk; CVE-2023-51449 went through it.
    An upload over --max-upload-size is refused by the upload route before it is stored."""
    import httpx

    workspace = tmp_path / "workspace"
    (workspace / "runs" / "r1").mkdir(parents=True)
    secret = workspace / "runs" / "r1" / "train.log"
    secret.write_text("private log\n")
    proc, url = start_app(workspace, "--max-upload-size", "4kb")
    try:
        upload = url + "gradio_api/upload"
        small = httpx.post(upload, files={"files": ("ok.jsonl", b'{"text": "hi"}\n' * 10)}, timeout=30)
        assert small.status_code == 200, small.text
        big = httpx.post(upload, files={"files": ("big.jsonl", b'{"text": "hi"}\n' * 1000)}, timeout=30)
        assert big.status_code == 413, (big.status_code, big.text)
        assert "maximum allowed size of 4096 bytes" in big.text, big.text
        for path in (str(secret), "/etc/passwd", f"{workspace}/../../../../etc/passwd"):
            for route in ("gradio_api/file=", "file="):
                target = url + route + urllib.parse.quote(path)
                with pytest.raises(urllib.error.HTTPError) as refused:
                    urllib.request.urlopen(target, timeout=10)
                assert refused.value.code in (403, 404), (target, refused.value.code)
        page = urllib.request.urlopen(url, timeout=10).read().decode()
        assert "private log" not in page
    finally:
        stop_app(proc)
    source = (Path(__file__).resolve().parent.parent / "launch.py").read_text()
    assert "allowed_paths" not in source and "FileExplorer" not in "".join(
        p.read_text() for p in (Path(__file__).resolve().parent.parent / "webui").glob("*.py")
    )


def test_help_documents_logins_the_share_link_and_the_open_host_warning():
    import subprocess
    import sys

    root = Path(__file__).resolve().parent.parent
    text = subprocess.run([sys.executable, "launch.py", "--help"], cwd=root, capture_output=True, text=True).stdout
    text = " ".join(text.split())
    for promise in (
        "0.0.0.0 without a login prints a warning",
        "never without a login",
        "a strong password for user 'tuneforge' is generated and printed once",
        "Offline (no tunnel), the app says so in one line and keeps serving locally",
        "5 a minute per client and 30 a minute overall",
        "largest accepted upload",
        "There is no TLS",
    ):
        assert promise in text, promise
