"""The OpenAI-compatible server holds its limits (issue #32, finding 6): `python -m backend.serve` on a tiny run,
with a non-ASCII API key, `--max-tokens`, `--max-request-bytes` and `--max-queue 1`.

Every refusal is OpenAI's JSON shape with the right status; a long generation stops when its client goes
(the server's CPU falls idle) and when the server gets SIGTERM (it exits within seconds).
"""

import json
import os
import shutil
import subprocess
import sys
import threading
import time

import httpx
import psutil
import pytest

from backend.events import EventLog
from tests.helpers import ROOT, free_port

KEY = "sk-test"
AUTH = {"Authorization": f"Bearer {KEY}"}
LIMIT_BYTES = 50_000


def serve(workspace, run_id, *flags) -> tuple[subprocess.Popen, str]:
    port = free_port()
    command = [sys.executable, "-m", "backend.serve", "--workspace", str(workspace), "--run", run_id]
    command += ["--port", str(port), "--api-key", KEY, *flags]
    log = open(workspace / f"serve-{port}.log", "wb")
    proc = subprocess.Popen(command, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{port}/v1"
    deadline = time.time() + 180
    while time.time() < deadline:
        assert proc.poll() is None, (workspace / f"serve-{port}.log").read_text()[-2000:]
        try:
            httpx.get(f"{url}/models", headers=AUTH, timeout=2)
            return proc, url
        except httpx.HTTPError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError("the server did not answer")


@pytest.fixture(scope="module")
def run(tmp_path_factory, small_model):
    """(workspace, run id) of a completed run whose merged export is the tiny model itself.

    The limits are the server's, whatever the weights: a run folder as a finished job and its first serve
    leave it (events, then export/merged/), without the training and merging that would cost a minute."""
    workspace = tmp_path_factory.mktemp("limits") / "workspace"
    run_dir = workspace / "runs" / "tiny-run"
    run_dir.mkdir(parents=True)
    events = EventLog(run_dir)
    events.emit("start", pid=1, config={"model": small_model})
    events.emit("end", status="completed")
    shutil.copytree(small_model, run_dir / "export" / "merged")
    os.utime(run_dir / "export" / "merged")  # newer than the run, as an export made after it is
    yield workspace, "tiny-run"


@pytest.fixture(scope="module")
def server(run):
    workspace, run_id = run
    proc, url = serve(workspace, run_id, "--max-tokens", "100000", "--max-request-bytes", str(LIMIT_BYTES),
                      "--max-queue", "1")  # fmt: skip
    yield proc, url, run_id
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=30)


def post(url, body, headers=AUTH, **kwargs) -> httpx.Response:
    return httpx.post(f"{url}/chat/completions", json=body, headers=headers, timeout=120, **kwargs)


def openai_refusal(answer: httpx.Response, status: int, param=None) -> dict:
    assert answer.status_code == status, (answer.status_code, answer.text[:500])
    error = answer.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and "Traceback" not in error["message"]
    assert error["param"] == param, error
    return error


def test_limits_and_refusals_are_openai_shaped(server):
    proc, url, run_id = server
    chat = [{"role": "user", "content": "What is the secret word?"}]
    ask = {"model": run_id, "messages": chat, "temperature": 0}

    # max_tokens is capped at the context left after the prompt (this model's context: 2048 tokens)
    reply = post(url, {**ask, "max_tokens": 1_000_000, "messages": [{"role": "user", "content": "a " * 1900}]})
    assert reply.status_code == 200, reply.text[:300]
    usage = reply.json()["usage"]
    assert usage["prompt_tokens"] + usage["completion_tokens"] <= 2048
    error = openai_refusal(post(url, {**ask, "messages": [{"role": "user", "content": "a " * 2100}]}), 400, "messages")
    assert error["code"] == "context_length_exceeded"
    error = openai_refusal(post(url, {**ask, "messages": [{"role": "user", "content": "a" * LIMIT_BYTES}]}), 413)
    assert error["code"] == "request_too_large"
    for bad, param in (
        ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}, "messages"),
        ({"messages": [{"role": "user", "content": 5}]}, "messages"),
        ({"max_tokens": "many"}, "max_tokens"),
        ({"max_tokens": -3}, "max_tokens"),
        ({"max_completion_tokens": 1.5}, "max_completion_tokens"),
        ({"stop": 7}, "stop"),
        ({"stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"temperature": "hot"}, "temperature"),
        ({"stream": "yes"}, "stream"),
    ):
        openai_refusal(post(url, {**ask, **bad}), 400, param)
    for header in ("Bearer sk-tëst", "Bearer \u2603", "Basic x", ""):
        raw = httpx.post(f"{url}/chat/completions", content=json.dumps(ask).encode(), timeout=30,
                         headers={"Authorization": header.encode("utf-8")} if header else {})  # fmt: skip
        assert openai_refusal(raw, 401)["code"] == "invalid_api_key"
    assert post(url, {**ask, "max_tokens": 3}).json()["usage"]["completion_tokens"] <= 3  # and it still serves
    assert proc.poll() is None


def busy(proc: subprocess.Popen, seconds: float = 1.0) -> float:
    process = psutil.Process(proc.pid)
    return process.cpu_percent(interval=seconds)


def long_stream(url, run_id):
    """A streamed request that generates until the context is full; the response, after its first chunk."""
    client = httpx.Client(timeout=60)
    body = {"model": run_id, "messages": [{"role": "user", "content": "Tell me everything."}], "stream": True,
            "max_tokens": 100_000, "temperature": 1.0}  # fmt: skip
    response = client.send(client.build_request("POST", f"{url}/chat/completions", json=body, headers=AUTH),
                           stream=True)  # fmt: skip
    lines = response.iter_lines()
    next(lines)
    return client, response, lines


def test_a_full_queue_is_429_and_a_gone_client_stops_its_generation(server):
    proc, url, run_id = server
    client, response, _ = long_stream(url, run_id)
    waiting = []
    thread = threading.Thread(target=lambda: waiting.append(post(url, {"model": run_id, "max_tokens": 2,
                              "messages": [{"role": "user", "content": "hi"}]})))  # fmt: skip
    thread.start()
    time.sleep(1.0)  # the second request waits in the line of one
    error = openai_refusal(post(url, {"model": run_id, "messages": [{"role": "user", "content": "hi"}]}), 429)
    assert error["code"] == "rate_limit_exceeded"
    response.close()  # the first client goes away mid-stream
    client.close()
    thread.join(timeout=60)
    assert waiting and waiting[0].status_code == 200  # its turn came
    time.sleep(0.5)
    assert busy(proc) < 30  # nothing generates any more for the client that left
    # a non-streamed request whose client gives up: its generation stops too
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{url}/chat/completions", headers=AUTH, timeout=1.5, json={
            "model": run_id, "max_tokens": 100_000, "temperature": 1.0,
            "messages": [{"role": "user", "content": "Tell me everything."}]})  # fmt: skip
    time.sleep(1.0)
    assert busy(proc) < 30


def test_sigterm_stops_the_server_while_it_generates(server):
    """Last: it stops the module's server."""
    proc, url, run_id = server
    client, response, lines = long_stream(url, run_id)
    assert all(next(lines) is not None for _ in range(6))  # tokens arrive: it generates
    proc.terminate()
    start = time.time()
    try:
        proc.wait(timeout=20)
    finally:
        response.close()
        client.close()
    # About a second on an idle machine; the bound leaves room for a busy one (exiting a torch process).
    took = time.time() - start
    assert took < 6, f"the server took {took:.1f} s to stop"
