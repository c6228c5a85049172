"""Logins: --auth and --auth-file are enforced, and --share never runs without a password."""

import urllib.error
import urllib.parse
import urllib.request

import pytest
from gradio_client import Client

from backend.errors import TuneForgeError
from tests.conftest import start_app, stop_app
from webui.access import SHARE_USER, credentials


def test_share_without_auth_generates_a_strong_password_shown_once():
    pairs, notes = credentials(None, None, share=True, host="127.0.0.1")
    ((user, password),), (note,) = pairs, notes
    assert user == SHARE_USER and len(password) >= 20 and password in note
    assert credentials(None, None, share=True, host="127.0.0.1")[0][0][1] != password


def test_auth_file_lines_and_their_errors(tmp_path):
    good = tmp_path / "users.txt"
    good.write_text("# team\nalice:s3cret\n\nbob:hunter2:with-colon\n")
    assert credentials(None, str(good), False, "127.0.0.1") == (
        [("alice", "s3cret"), ("bob", "hunter2:with-colon")],
        [],
    )
    bad = tmp_path / "bad.txt"
    bad.write_text("alice:s3cret\nnocolon\n")
    with pytest.raises(TuneForgeError, match="bad.txt: line 2: expected user:password"):
        credentials(None, str(bad), False, "127.0.0.1")
    with pytest.raises(TuneForgeError, match="--auth: expected user:password"):
        credentials("alice", None, False, "127.0.0.1")


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
