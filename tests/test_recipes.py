"""Data recipes: documents made here (a real PDF, a real DOCX, Markdown, HTML, TXT, a zip) become chunks, a
generator writes rows from them, the rows are flagged and saved as a named dataset that trains.

Generators: our own `backend.serve` of a tiny run on loopback (what it writes is noise; the plumbing is the
point), and small stdlib servers that answer, time out, send malformed JSON, or are not there at all."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from backend.recipes.chunking import chunk_files, token_counter
from backend.recipes.documents import Block, FileReport, read_sources
from backend.recipes.folder import ROWS_FILE, read_jsonl
from backend.recipes.jobs import RecipeJobs
from backend.recipes.quality import flag_rows, kept
from backend.recipes.settings import RecipeConfig
from backend.recipes.worker import prepare_folder, run
from backend.runs.job_manager import JobManager
from backend.serving.servers import Servers
from tests.helpers import CHROMIUM_ARGS, ROOT, train_in_process, wait_for

QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0}
WARRANTY = [
    "The warranty covers the battery for twelve months from the date of purchase.",
    "Returns are accepted within thirty days when the item is unused and in its box.",
]


# ---- documents made by the tests ---------------------------------------------------------------------
def write_pdf(path: Path, pages: list[str], image_only: bool = False) -> Path:
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_font("Helvetica", size=12)
    for text in pages:
        pdf.add_page()
        if image_only:  # a scan: a picture of a page, and no text layer
            from PIL import Image

            picture = path.with_suffix(".png")
            Image.new("RGB", (200, 100), "white").save(picture)
            pdf.image(str(picture), x=10, y=10, w=100)
        else:
            pdf.multi_cell(0, 8, text)
    pdf.output(str(path))
    return path


def write_docx(path: Path) -> Path:
    import docx

    document = docx.Document()
    document.add_heading("Refunds", level=1)
    document.add_paragraph("Refunds go back to the card used for the purchase.")
    document.add_heading("Shipping", level=2)
    document.add_paragraph("Orders ship within two working days.")
    document.save(str(path))
    return path


@pytest.fixture()
def documents(tmp_path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    write_pdf(folder / "manual.pdf", [f"Page one. {WARRANTY[0]}", f"Page two. {WARRANTY[1]}"])
    write_pdf(folder / "scan.pdf", ["(an image)"], image_only=True)
    write_docx(folder / "policy.docx")
    (folder / "guide.md").write_text("# Setup\n\nPlug it in.\nWait for the light.\n\n## Reset\n\nHold the button.\n")
    (folder / "faq.html").write_text(
        "<html><head><style>p{}</style><script>track()</script></head><body><nav>Home | About</nav>"
        "<h2>Opening hours</h2><p>We are open <b>daily</b> from 9 to 5.</p></body></html>"
    )
    (folder / "notes.txt").write_text("First paragraph.\n\nSecond paragraph.\n")
    with zipfile.ZipFile(folder / "bundle.zip", "w") as archive:
        archive.write(folder / "guide.md", "inner/guide.md")
        archive.writestr("inner/broken.pdf", b"%PDF-1.4 not really")
    return folder


def test_each_document_type_parses_with_its_pages_and_headings_and_a_scan_is_named(documents):
    reports = {Path(r.path.split("!")[-1]).name: r for r in read_sources([documents])}
    assert set(reports) == {"manual.pdf", "scan.pdf", "policy.docx", "guide.md", "faq.html", "notes.txt", "broken.pdf"}

    pdf = reports["manual.pdf"]
    assert [(b.page, b.text.split(".")[0]) for b in pdf.blocks] == [(1, "Page one"), (2, "Page two")]
    assert "scanned PDF" in reports["scan.pdf"].error and "OCR" in reports["scan.pdf"].error
    assert [(b.text, b.heading) for b in reports["policy.docx"].blocks] == [
        ("Refunds", True), ("Refunds go back to the card used for the purchase.", False),
        ("Shipping", True), ("Orders ship within two working days.", False),
    ]  # fmt: skip
    assert [(b.text, b.heading) for b in reports["guide.md"].blocks] == [
        ("Setup", True), ("Plug it in. Wait for the light.", False), ("Reset", True), ("Hold the button.", False),
    ]  # fmt: skip
    assert [(b.text, b.heading) for b in reports["faq.html"].blocks] == [
        ("Opening hours", True),
        ("We are open daily from 9 to 5.", False),
    ]  # fmt: skip  (no script, style or navigation)
    assert [b.text for b in reports["notes.txt"].blocks] == ["First paragraph.", "Second paragraph."]
    assert reports["broken.pdf"].error.startswith("cannot read it") and "bundle.zip!inner/broken.pdf" in (
        reports["broken.pdf"].path
    )
    zipped = [r for r in read_sources([documents / "bundle.zip"]) if not r.error]
    assert [b.text for b in zipped[0].blocks] == [b.text for b in reports["guide.md"].blocks]
    assert read_sources([documents / "missing.txt"])[0].error == "no such file or folder"


def test_chunks_break_at_headings_fit_the_target_and_repeat_the_overlap(default_model_dir):
    words = lambda text: len(text.split())  # noqa: E731 - a counter whose arithmetic the test can do
    long = " ".join(f"w{i}" for i in range(100))
    blocks = [Block("a.md", "Intro", heading=True), Block("a.md", long, page=3), Block("a.md", "Next", heading=True)]
    blocks += [Block("a.md", "short one."), Block("a.md", "short two.")]
    report = FileReport("a.md", blocks=blocks)
    chunks = chunk_files([report], words, 30, 5)
    assert [c.heading for c in chunks] == ["Intro"] * 4 + ["Next"] and report.chunks == 5
    assert all(c.tokens <= 30 for c in chunks) and chunks[0].source == {"file": "a.md", "page": 3, "heading": "Intro"}
    for before, after in zip(chunks[:3], chunks[1:4], strict=True):
        assert after.text.split()[:5] == before.text.split()[-5:]  # the overlap: the last 5 tokens, repeated
    assert " ".join(dict.fromkeys(" ".join(c.text for c in chunks[:4]).split())) == long  # nothing lost
    assert chunks[4].text == "short one. short two."  # a heading starts afresh: no overlap across it

    count = token_counter("default")  # the model's own tokenizer
    text = " ".join(WARRANTY * 12)
    real = chunk_files([FileReport("w.txt", blocks=[Block("w.txt", text)])], count, 48, 8)
    assert len(real) > 3 and all(count(c.text) <= 48 for c in real)
    for a, b in zip(real, real[1:], strict=False):  # b repeats the most whole words of a's end that fit in 8 tokens
        tail = max(k for k in range(12) if b.text.split()[:k] == a.text.split()[len(a.text.split()) - k :])
        assert tail and count(" ".join(a.text.split()[-tail:])) <= 8 < count(" ".join(a.text.split()[-tail - 1 :]))


def test_duplicates_near_duplicates_ungrounded_short_and_pii_rows_are_flagged():
    chunk = "The warranty covers the battery for twelve months from the date of purchase."
    long_answer = "The warranty covers the battery for twelve months from the date of purchase, as the policy says."
    rows = [
        {"instruction": "How long is the battery covered?", "output": long_answer},
        {"instruction": "how long is the battery covered", "output": long_answer.upper()},  # folded: the same
        {"instruction": "How long is the battery covered?", "output": long_answer.replace("policy", "manual")},
        {"instruction": "Who founded the company?", "output": "Ada Lovelace founded it in Paris during 1843."},
        {"instruction": "Is it covered?", "output": "Yes."},
        {"instruction": "Whom do I mail?", "output": "Mail the battery desk at help@example.com."},
        {"messages": [{"role": "user", "content": "Battery?"}, {"role": "assistant", "content": chunk}]},
    ]
    rows = [{**row, "chunk": 0} for row in rows]
    flags = flag_rows(rows, {0: chunk}, grounding_min=0.5, near_threshold=0.7)
    assert flags == [[], ["duplicate"], ["near_duplicate"], ["ungrounded"], ["too_short"], ["ungrounded", "pii"], []]
    assert [r["instruction"] for r in kept(rows[:4], flags[:4])] == [rows[0]["instruction"], rows[3]["instruction"]]


# ---- generators: small stdlib servers -----------------------------------------------------------------
class FakeEndpoint:
    """An OpenAI-compatible server on loopback: 'ok' answers (each question different), 'slow_every_other'
    sleeps past the client's timeout on every second request, 'malformed' sends broken JSON, 'slow' sleeps
    `delay` before each answer. It counts the requests it gets."""

    def __init__(self, mode: str = "ok", delay: float = 0.0):
        self.mode, self.delay, self.requests, self.keys, self.prompts = mode, delay, 0, set(), []
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = json.loads(self.rfile.read(int(self.headers["content-length"])))
                endpoint.requests += 1
                endpoint.keys.add(self.headers.get("authorization"))
                n, prompt = endpoint.requests, body["messages"][0]["content"]
                endpoint.prompts.append(prompt)
                if endpoint.mode == "slow_every_other" and n % 2 == 0 or endpoint.delay:
                    time.sleep(endpoint.delay or 2.0)
                if endpoint.mode == "malformed":
                    payload = b'{"choices": [{"message": '
                else:
                    words = prompt.split("\n\n")[1].split()[:8]  # the chunk's first words: one row per chunk
                    text = f"What does '{' '.join(words)}' mean?" if "Write one question" in prompt else " ".join(words)
                    payload = json.dumps({"choices": [{"message": {"role": "assistant", "content": text}}]}).encode()
                try:
                    self.send_response(200)
                    self.send_header("content-type", "application/json")
                    self.end_headers()
                    self.wfile.write(payload)
                except OSError:
                    pass  # the client gave up (a timeout): nobody is listening

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads, self.server.block_on_close = True, False  # a sleeping handler is not waited for
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def cook(tmp_path: Path, sources: list, generator, workspace: Path | None = None, **options) -> tuple[dict, Path]:
    """A recipe run in this process, as the job runs it; (its end event, its folder)."""
    api_key = generator.pop("api_key", "") if isinstance(generator, dict) else ""
    config = RecipeConfig.from_dict({"name": "t", "sources": [str(s) for s in sources], "generator": generator,
                                     "chunk_tokens": 64, "overlap_tokens": 8, **options})  # fmt: skip
    folder = tmp_path / "recipe"
    prepare_folder(config, folder)
    return run(config, folder, workspace or tmp_path / "workspace", api_key), folder


def test_timeouts_are_retried_and_malformed_or_absent_servers_are_counted_never_fatal(tmp_path, default_model_dir):
    pdf = write_pdf(tmp_path / "manual.pdf", [f"Page one. {WARRANTY[0]}", f"Page two. {WARRANTY[1]}"])
    flaky = FakeEndpoint("slow_every_other")
    try:
        generator = {"base_url": flaky.url, "model": "m", "api_key": "sk-flaky"}
        end, folder = cook(tmp_path / "flaky", [pdf], generator, timeout_s=0.5, retries=1, per_chunk=2)
    finally:
        flaky.close()
    assert end["status"] == "completed" and end["rows"] == 2 and end["failed_calls"] == 0 and end["retried_calls"] >= 1
    assert flaky.keys == {"Bearer sk-flaky"}
    assert not any("sk-flaky" in p.read_text() for p in (tmp_path / "flaky").rglob("*") if p.is_file())
    rows = read_jsonl(folder / ROWS_FILE)
    assert [r["source"] for r in rows] == [{"file": "manual.pdf", "page": 1}] * 2  # both pages fit one chunk

    broken = FakeEndpoint("malformed")
    try:
        end, _ = cook(tmp_path / "broken", [pdf], {"base_url": broken.url, "model": "m"}, retries=2, per_chunk=2)
    finally:
        broken.close()
    assert end["status"] == "failed" and end["failed_calls"] == 2 and broken.requests == 2 * 3  # 2 units, 3 tries
    assert "not a chat completion" in end["error"]

    closed = FakeEndpoint()
    url = closed.url
    closed.close()  # down: nothing listens on its port any more
    end, _ = cook(tmp_path / "down", [pdf], {"base_url": url, "model": "m"}, retries=1, per_chunk=2)
    assert end["status"] == "failed" and end["failed_calls"] == 2 and "cannot reach" in end["error"]


def test_every_kind_of_row_is_built_and_an_edited_template_with_its_example_is_what_the_generator_reads(
    tmp_path, default_model_dir
):
    guide = tmp_path / "guide.md"
    guide.write_text("# Warranty\n\n" + WARRANTY[0] + "\n")
    endpoint = FakeEndpoint()
    try:
        made = {}
        for kind in ("qa", "instruction", "summary", "chat", "preference"):
            options = {"kind": kind}
            if kind == "qa":
                options["templates"] = {"question": "From {source}:\n\n{chunk}\n\nWrite one question. Like: {example}"}
                options["examples"] = {"question": "Is water covered?"}
            end, folder = cook(tmp_path / kind, [guide], {"base_url": endpoint.url, "model": "m"}, **options)
            assert end["status"] == "completed", end
            made[kind] = read_jsonl(folder / ROWS_FILE)[0]
    finally:
        endpoint.close()
    assert (
        endpoint.prompts[0]
        == f"From guide.md, § Warranty:\n\n{WARRANTY[0]}\n\nWrite one question. Like: Is water covered?"
    )
    assert made["qa"]["instruction"].startswith("What does") and made["qa"]["output"].startswith("The warranty")
    assert made["instruction"]["instruction"] and made["instruction"]["output"]
    assert made["summary"]["instruction"] == "Summarize the following text." and made["summary"]["input"] == WARRANTY[0]
    assert [m["role"] for m in made["chat"]["messages"]] == ["user", "assistant"] * 2
    assert {"instruction", "chosen", "rejected"} <= set(made["preference"])
    assert all(row["source"] == {"file": "guide.md", "heading": "Warranty"} for row in made.values())


def test_an_aborted_recipe_resumes_from_the_cli_keeping_its_rows_and_not_asking_for_them_again(
    tmp_path, documents, default_model_dir
):
    workspace = tmp_path / "workspace"
    jobs = JobManager(workspace)
    recipes = RecipeJobs(jobs)
    endpoint = FakeEndpoint(delay=0.4)
    try:
        spec = {"sources": [str(documents / "policy.docx"), str(documents / "guide.md")], "kind": "qa",
                "generator": {"base_url": endpoint.url, "model": "m", "api_key": "sk-x"}, "chunk_tokens": 64,
                "per_chunk": 3, "name": "resumed"}  # fmt: skip
        recipe_id = recipes.start(spec)
        wait_for(lambda: recipes.status(recipe_id)["rows"] >= 2, timeout=120, interval=0.1)
        recipes.abort(recipe_id)
        status = recipes.status(recipe_id)
        assert status["status"] == "aborted" and status["rows"] >= 2 and status["total"] == 12  # 4 chunks x 3
        assert {Path(f["path"]).name: f["chunks"] for f in status["files"]} == {"policy.docx": 2, "guide.md": 2}
        kept_rows = read_jsonl(workspace / "recipes" / recipe_id / ROWS_FILE)
        endpoint.delay, asked_before = 0.0, endpoint.requests

        config = workspace / "recipes" / recipe_id / "recipe.yaml"
        assert "sk-x" not in config.read_text()
        result = subprocess.run(
            [sys.executable, "-m", "backend.recipe", "--config", str(config), "--workspace", str(workspace)],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
            env={**os.environ, "TUNEFORGE_RECIPE_API_KEY": "sk-x"},
        )  # fmt: skip
    finally:
        endpoint.close()
    assert result.returncode == 0, result.stderr
    rows = read_jsonl(workspace / "recipes" / recipe_id / ROWS_FILE)
    assert rows[: len(kept_rows)] == kept_rows and len(rows) == 12
    assert endpoint.requests - asked_before == 2 * (12 - len(kept_rows))  # a question and an answer per new row
    # Each chunk's three rows are one row thrice: two of them are duplicates, which the saved set drops.
    status = recipes.status(recipe_id)
    assert status["status"] == "completed" and status["dataset"] == "resumed" and status["saved_rows"] == 4
    saved = read_jsonl(workspace / "datasets" / "resumed.jsonl")
    assert {r["source"]["heading"] for r in saved} == {"Refunds", "Shipping", "Setup", "Reset"}

    refused = subprocess.run(
        [sys.executable, "-m", "backend.recipe", "--config", str(config.with_name("none.yaml"))],
        cwd=ROOT, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert refused.returncode == 2 and refused.stderr.startswith("error: ") and "Traceback" not in refused.stderr
    jobs.shutdown()


# ---- our own server of a tiny run -------------------------------------------------------------------------
@pytest.fixture(scope="module")
def served(tmp_path_factory, small_model, secret_dataset):
    """(jobs, run id, base URL) of a tiny run served with an API key, as the Export tab's Serve button does.

    30 steps, so that it writes words ("The secret word is pineapple.", whatever it is asked); after 2 steps
    at QUICK's rate it wrote only newlines, which a recipe rightly counts as failed calls."""
    jobs = JobManager(tmp_path_factory.mktemp("recipes") / "workspace")
    learned = {**QUICK, "max_steps": 30, "learning_rate": 3e-3}
    run_id = train_in_process(jobs, {"model": small_model, "dataset": str(secret_dataset), **learned})
    servers = Servers(jobs)
    url = servers.start(run_id, api_key="sk-served")
    yield jobs, run_id, url
    servers.shutdown()
    jobs.shutdown()


def test_a_recipe_written_by_our_served_run_saves_a_dataset_that_trains(served, tmp_path, small_model, monkeypatch):
    jobs, run_id, url = served
    pdf = write_pdf(tmp_path / "manual.pdf", [f"Page one. {WARRANTY[0]}", f"Page two. {WARRANTY[1]}"])
    recipes = RecipeJobs(jobs)
    generator = {"base_url": url, "model": run_id, "api_key": "sk-served"}
    spec = {"sources": [str(pdf)], "generator": generator, "kind": "qa", "chunk_tokens": 64, "per_chunk": 2,
            "name": "from_served", "max_tokens": 16, "min_chars": 0, "retries": 3}  # fmt: skip
    recipe_id = recipes.start(spec)
    status = wait_for(lambda: (s := recipes.status(recipe_id))["status"] != "running" and s, timeout=180)
    assert status["status"] == "completed", status
    assert set(status) >= {"status", "rows", "dataset", "failed_calls", "files"} and status["dataset"] == "from_served"
    assert status["rows"] == 2 and status["failed_calls"] == 0 and status["files"][0]["chunks"] == 1
    saved = read_jsonl(jobs.workspace / "datasets" / "from_served.jsonl")
    assert len(saved) == status["saved_rows"] >= 1
    assert all(r["source"]["file"] == "manual.pdf" and r["instruction"] and r["output"] for r in saved)
    assert not any("sk-served" in p.read_text(errors="ignore") for p in jobs.workspace.rglob("*.*") if p.is_file()
                   and p.suffix in (".yaml", ".jsonl", ".json", ".log"))  # fmt: skip
    # The same run as a local generator, through the chat engine rather than the server.
    end, folder = cook(tmp_path / "local", [pdf], {"run": run_id}, jobs.workspace, max_tokens=12, min_chars=0)
    assert end["status"] == "completed" and end["rows"] == 1, end
    assert read_jsonl(folder / ROWS_FILE)[0]["output"].strip()

    monkeypatch.setenv("TUNEFORGE_WORKSPACE", str(jobs.workspace))  # as the app sets it for its jobs
    trained = train_in_process(jobs, {"model": small_model, "dataset": "from_served", **QUICK})
    assert jobs.status(trained)["status"] == "completed"


def field(page, elem_id: str):
    """A Gradio textbox's own box: a textarea, or an input (a password)."""
    return page.locator(f"#{elem_id} textarea, #{elem_id} input").first


def test_upload_a_pdf_generate_with_the_served_run_edit_a_row_save_and_find_it_on_the_dataset_tab(
    app, served, tmp_path
):
    from playwright.sync_api import expect, sync_playwright

    _jobs, run_id, url = served
    app_url, workspace = app
    pdf = write_pdf(tmp_path / "handbook.pdf", [f"Page one. {WARRANTY[0]}"])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app_url)
        page.get_by_role("tab", name="Recipes").click()
        page.locator("#recipe-upload input[type=file]").set_input_files(str(pdf))
        sources = page.locator("#recipe-sources textarea")
        expect(sources).to_have_value(re.compile(r"handbook\.pdf"), timeout=30_000)
        page.locator("#recipe-preview-btn").click()
        expect(page.locator("#recipe-chunks")).to_contain_text("handbook.pdf, p. 1", timeout=30_000)
        field(page, "recipe-name").fill("handbook")
        field(page, "recipe-base-url").fill(url)
        field(page, "recipe-model").fill(run_id)
        field(page, "recipe-api-key").fill("sk-served")
        page.locator("#recipe-start").click()
        expect(page.locator("#recipe-progress-line")).to_have_attribute("data-status", "completed", timeout=120_000)
        cell = page.locator("#recipe-rows [data-testid=cell-0-1]")  # the first row's prompt
        cell.dblclick()
        editor = cell.locator("textarea, input").first
        editor.fill("What does the warranty cover?")
        editor.press("Enter")
        field(page, "recipe-save-name").fill("handbook_reviewed")
        page.locator("#recipe-save").click()
        expect(page.locator("#recipe-message")).to_contain_text("handbook_reviewed", timeout=30_000)
        page.get_by_role("tab", name="Dataset").click()
        page.locator("#demo-dataset input").click()
        expect(page.get_by_role("option", name="handbook_reviewed", exact=True)).to_be_visible(timeout=15_000)
        browser.close()
    saved = read_jsonl(workspace / "datasets" / "handbook_reviewed.jsonl")
    assert saved[0]["instruction"] == "What does the warranty cover?" and saved[0]["source"]["file"] == "handbook.pdf"


def test_the_api_starts_watches_and_aborts_a_recipe_and_refuses_bad_specs_in_one_line(app, tmp_path):
    from gradio_client import Client

    url, workspace = app
    # download_files=False: gradio_client takes any returned dict with a "path" (recipe_status's files, as the
    # contract names them) for a file to download, and the app rightly refuses to serve a workspace file.
    client = Client(url, verbose=False, download_files=False)
    docs = workspace / "docs"
    docs.mkdir(exist_ok=True)
    (docs / "guide.md").write_text("# Setup\n\n" + " ".join(WARRANTY * 4) + "\n\n# Reset\n\nHold the button.\n")
    endpoint = FakeEndpoint(delay=0.5)
    try:
        spec = {"sources": [str(docs)], "generator": {"base_url": endpoint.url, "model": "m", "api_key": "sk-api"},
                "kind": "qa", "chunk_tokens": 32, "per_chunk": 3, "name": "api_recipe"}  # fmt: skip
        recipe_id = client.predict(spec, api_name="/recipe_start")
        wait_for(lambda: client.predict(recipe_id, api_name="/recipe_status")["rows"] >= 1, timeout=120)
        client.predict(recipe_id, api_name="/recipe_abort")
    finally:
        endpoint.close()
    status = client.predict(recipe_id, api_name="/recipe_status")
    assert status["status"] == "aborted" and status["rows"] >= 1 and status["dataset"] is None
    assert [Path(f["path"]).name for f in status["files"]] == ["guide.md"] and status["files"][0]["error"] is None
    for bad, reason in (
        ({**spec, "sources": ["/etc/hostname"]}, "outside the workspace"),
        ({**spec, "kind": "essay"}, "kind 'essay': use one of qa, instruction, summary, chat, preference"),
        ({**spec, "name": "../up"}, "name '../up'"),
        ({**spec, "per_chunk": 500}, "per_chunk 500: must be between 1 and 20"),
    ):
        with pytest.raises(Exception, match=re.escape(reason)) as refused:
            client.predict(bad, api_name="/recipe_start")
        assert "Traceback" not in str(refused.value) and "\n" not in str(refused.value).strip()
