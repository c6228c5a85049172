"""A run served over an OpenAI-compatible API (transformers' engine), called with the official `openai` client; and,
in a browser, a GGUF exported from the Export tab and downloaded. On the tiny model: the plumbing is the point.
llama.cpp's engine is in tests/test_gguf_export.py."""

import json
import re
import subprocess
import sys

import httpx
import openai
import pytest
from openai import OpenAI

from backend.runs.job_manager import JobManager
from backend.serving.servers import Servers
from tests.helpers import CHROMIUM_ARGS, ROOT, train_in_process

QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0}


@pytest.fixture(scope="module")
def served(tmp_path_factory, small_vocab_model_of, secret_dataset):
    """(jobs, run id, base URL) of a tiny run served with an API key, as the Export tab's Serve button does."""
    jobs = JobManager(tmp_path_factory.mktemp("serve") / "workspace")
    model = str(small_vocab_model_of("llama"))
    run_id = train_in_process(jobs, {"model": model, "dataset": str(secret_dataset), **QUICK})
    servers = Servers(jobs)
    url = servers.start(run_id, api_key="sk-test")
    yield jobs, run_id, url
    servers.shutdown()
    jobs.shutdown()


def test_the_openai_client_lists_the_run_chats_streams_and_gets_openai_errors(served):
    jobs, run_id, url = served
    client = OpenAI(base_url=url, api_key="sk-test")
    assert [model.id for model in client.models.list()] == [run_id]

    chat = [{"role": "user", "content": "What is the secret word?"}]
    reply = client.chat.completions.create(model=run_id, messages=chat, max_tokens=4, temperature=0, top_p=0.9)
    assert reply.model == run_id and reply.choices[0].finish_reason in ("stop", "length")
    assert isinstance(reply.choices[0].message.content, str) and reply.usage.completion_tokens <= 4
    stream = client.chat.completions.create(model=run_id, messages=chat, max_tokens=4, temperature=0, stream=True)
    chunks = [chunk for chunk in stream if chunk.choices]
    assert chunks and all(chunk.model == run_id for chunk in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == reply.choices[0].message.content  # greedy
    stopped = client.chat.completions.create(model=run_id, messages=chat, max_tokens=4, temperature=0, stop=["\n"])
    assert "\n" not in stopped.choices[0].message.content
    # Raw-text completions too, whole and streamed alike.
    completion = client.completions.create(model=run_id, prompt="The secret word is", max_tokens=4, temperature=0)
    assert completion.model == run_id and isinstance(completion.choices[0].text, str)
    pieces = client.completions.create(model=run_id, prompt="The secret word is", max_tokens=4, temperature=0,
                                       stream=True)  # fmt: skip
    assert "".join(c.choices[0].text for c in pieces if c.choices) == completion.choices[0].text

    with pytest.raises(openai.NotFoundError) as unknown:
        client.chat.completions.create(model="gpt-4o", messages=chat)
    assert unknown.value.body["code"] == "model_not_found" and run_id in unknown.value.body["message"]
    for bad, where in (([{"role": "wizard", "content": "hi"}], "messages[0]: 'role'"), ([], "non-empty list")):
        with pytest.raises(openai.BadRequestError, match=re.escape(where)) as refused:
            client.chat.completions.create(model=run_id, messages=bad)
        assert refused.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.AuthenticationError):
        OpenAI(base_url=url, api_key="sk-wrong").models.list()
    malformed = httpx.post(f"{url}/chat/completions", content=b"{not json", headers={"Authorization": "Bearer sk-test"})
    assert malformed.status_code == 400 and "not valid JSON" in malformed.json()["error"]["message"]
    # ...and after every refusal it still serves.
    assert client.chat.completions.create(model=run_id, messages=chat, max_tokens=2).choices


def test_the_serve_command_refuses_a_run_it_cannot_serve_in_one_line(served, tmp_path):
    jobs, run_id, url = served
    port = url.rsplit(":", 1)[1].split("/")[0]
    for args, message in (
        (["--run", "nope"], "error: no run named 'nope'"),
        (["--run", run_id, "--port", port], f"error: cannot listen on 127.0.0.1:{port}"),  # the served one's port
    ):
        result = subprocess.run(
            [sys.executable, "-m", "backend.serve", "--workspace", str(jobs.workspace), *args],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert result.returncode == 2 and result.stderr.strip().startswith(message), result.stderr
        assert "Traceback" not in result.stderr


def test_a_gguf_exported_from_the_export_tab_downloads(app, gguf_tiny_model_of, secret_dataset, tmp_path):
    """q4_k_m, what Ollama pulls; the tab shows what llama.cpp measured of it (more in tests/test_gguf_export.py)."""
    from playwright.sync_api import expect, sync_playwright

    url, workspace = app
    model = str(gguf_tiny_model_of("llama"))
    run_id = train_in_process(JobManager(workspace), {"model": model, "dataset": str(secret_dataset), **QUICK})
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        page.get_by_role("tab", name="Export").click()
        page.locator("#export-run input").click()
        page.get_by_role("option", name=run_id).click()
        page.locator("#export-kind").get_by_text("gguf", exact=True).click()
        expect(page.locator("#export-gguf-table")).to_contain_text("q4_k_m")
        page.locator("#export-gguf-type input").click()
        page.get_by_role("option", name="q4_k_m", exact=True).click()
        page.locator("#export-btn").click()
        message = page.locator("#export-message")
        expect(message).to_contain_text("ready to download", timeout=180_000)
        expect(message).to_contain_text(re.compile(r"Checked in llama\.cpp: \d+ of 24 greedy tokens agree"))
        expect(message).to_contain_text(re.compile(r"Perplexity in llama\.cpp [\d.]+ \(f16: [\d.]+\)"))
        link = page.locator(f'#export-file a[download="{run_id}-q4_k_m.gguf"]')
        with page.expect_download() as download:
            link.click()
        saved = tmp_path / "downloaded.gguf"
        download.value.save_as(saved)
        browser.close()
    exported = workspace / "runs" / run_id / "export" / "gguf-q4_k_m"
    assert (
        saved.read_bytes()[:4] == b"GGUF"
        and saved.stat().st_size == (exported / f"{run_id}-q4_k_m.gguf").stat().st_size
    )
    check = json.loads((exported / "verification.json").read_text())
    assert check["passed"] and check["tokens_match"] and check["ppl"] <= 1.15 * check["ppl_f16"], check


def test_a_streamed_reply_never_sends_any_part_of_a_stop_sequence():
    """transformers stops after a stop string and keeps it; OpenAI's reply ends before it, streamed or not."""
    from backend.serving.openai_server import Reply

    reply = Reply(["/models/merged@main"], "run-1", ["END", "\n\n"])
    sent = [reply.piece(text, last=False) for text in ("The ans", "wer is 4", "2 E", "ND more")]
    assert sent == ["The ans", "wer is 4", "2 ", ""] and reply.stopped
    assert reply.piece(" and more", last=True) == ""
    held = Reply([], "run-1", ["END"])
    assert [held.piece("Fin E", last=False), held.piece("", last=True)] == ["Fin ", "E"]  # not a stop after all
    assert Reply([], "run-1", ["\n"]).whole("one\ntwo") == "one"
    assert reply.named({"model": "/models/merged@main"}) == {"model": "run-1"}
