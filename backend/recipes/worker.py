"""The recipe job: read, chunk, generate row after row, flag, and save; resumable at any row.

Its folder (`output_dir`) is the contract with the app, as a run folder is for training:
  recipe.yaml     the options, without the API key
  events.jsonl    start {pid, total}, files {files}, progress {done, total, rows, failed_calls, retried_calls,
                  eta_s}, end {status, error, rows, dataset} (backend.events' format, read tolerantly)
  chunks.jsonl    every chunk: index, text, source, tokens (the preview)
  rows.jsonl      every generated row, with its `unit` (chunk and sample), `chunk` and `source`
  failures.jsonl  every call that failed after its retries: unit, step, reason
A unit (one row of one chunk) is in rows.jsonl once it is whole, so a resume skips exactly the units already
paid for, and retries those that failed. Running the same recipe again into the same folder resumes it.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from pathlib import Path

from backend.errors import TuneForgeError
from backend.events import EventLog
from backend.files import write_text_atomically
from backend.recipes.chunking import Chunk, chunk_files, token_counter
from backend.recipes.documents import read_sources
from backend.recipes.folder import (
    CHUNKS_FILE,
    CONFIG_NAME,
    FAILURES_FILE,
    ROWS_FILE,
    SETTINGS_FILE,
    append_jsonl,
    read_jsonl,
)
from backend.recipes.generators import CallFailed, Generator, describe_generator, open_generator
from backend.recipes.saving import save_recipe_rows
from backend.recipes.settings import RecipeConfig
from backend.recipes.steps import EXAMPLES, TEMPLATES, MalformedOutput, clean, fill, make_row

BACKOFF_S = 0.25


class Aborted(Exception):
    pass


class UnitFailed(Exception):
    def __init__(self, step: str, reason: str):
        super().__init__(reason)
        self.step, self.reason = step, reason


def prepare_folder(config: RecipeConfig, folder: Path) -> None:
    """Write the recipe into its folder; a folder holding another recipe's rows is refused, not mixed."""
    folder.mkdir(parents=True, exist_ok=True)
    settings = folder / SETTINGS_FILE
    fingerprint = json.dumps(config.fingerprint(), sort_keys=True, ensure_ascii=False)
    if settings.exists() and (folder / ROWS_FILE).exists() and settings.read_text(encoding="utf-8") != fingerprint:
        raise TuneForgeError(
            f"{folder} holds rows of a recipe with other sources or settings; give another output_dir (or name), "
            "or delete that folder to start over"
        )
    write_text_atomically(settings, fingerprint)
    write_text_atomically(folder / CONFIG_NAME, config.to_yaml())


def chunk_sources(config: RecipeConfig):
    reports = read_sources(config.sources)
    chunks = chunk_files(reports, token_counter(config.model), config.chunk_tokens, config.overlap_tokens)
    if config.max_chunks:
        chunks = chunks[: config.max_chunks]
    return reports, chunks


def run(config: RecipeConfig, folder: Path, workspace: Path, api_key: str = "") -> dict:
    """Cook the recipe into folder; returns its end event. Never raises for one bad file or one failed call."""
    events = EventLog(folder)
    signal.signal(signal.SIGTERM, _abort_on_signal)
    try:
        events.emit("start", pid=os.getpid(), generator=describe_generator(config.generator), kind=config.kind)
        reports, chunks = chunk_sources(config)
        events.emit("files", files=[r.as_dict() for r in reports])
        write_text_atomically(folder / CHUNKS_FILE, "".join(_chunk_line(c) for c in chunks))
        if not chunks:
            return events.emit("end", status="failed", error="no text to work from: " + _file_errors(reports))
        generator = open_generator(config.generator, api_key, workspace, config.timeout_s)
        counts = generate(config, folder, chunks, generator, events)
        return finish(config, folder, workspace, events, counts)
    except Aborted:
        return events.emit("end", status="aborted", error="aborted by the user")
    except TuneForgeError as exc:
        return events.emit("end", status="failed", error=str(exc))


def generate(config: RecipeConfig, folder: Path, chunks: list[Chunk], generator: Generator, events) -> dict:
    rows_path, failures_path = folder / ROWS_FILE, folder / FAILURES_FILE
    done = {row["unit"] for row in read_jsonl(rows_path)}
    units = [(chunk, k) for chunk in chunks for k in range(config.per_chunk)]
    counts = {"rows": len(done), "failed_calls": len(read_jsonl(failures_path)), "retried_calls": 0, "last": ""}
    todo = [(chunk, k) for chunk, k in units if _unit(chunk, k) not in done]
    began, finished = time.time(), 0
    events.emit("progress", done=len(units) - len(todo), total=len(units), **_public(counts), eta_s=None)
    for chunk, k in todo:
        unit = _unit(chunk, k)
        try:
            row = make_row(config.kind, _asker(config, chunk, generator, counts), chunk.text)
            append_jsonl(rows_path, {"unit": unit, "chunk": chunk.index, **row, "source": chunk.source})
            counts["rows"] += 1
        except UnitFailed as failed:
            append_jsonl(failures_path, {"unit": unit, "step": failed.step, "reason": failed.reason})
            counts["failed_calls"] += 1
            counts["last"] = failed.reason
        finished += 1
        eta = (time.time() - began) / finished * (len(todo) - finished)
        done_now = len(units) - len(todo) + finished
        events.emit("progress", done=done_now, total=len(units), **_public(counts), eta_s=round(eta, 1))
    return counts


def _asker(config: RecipeConfig, chunk: Chunk, generator: Generator, counts: dict):
    templates, examples = {**TEMPLATES, **config.templates}, {**EXAMPLES, **config.examples}

    def ask(step: str, values: dict) -> str:
        base = {"chunk": chunk.text, "source": chunk.source_line, "example": examples[step], "conversation": ""}
        prompt = fill(templates[step], {**base, **values})
        reason = ""
        for attempt in range(config.retries + 1):
            if attempt:
                counts["retried_calls"] += 1
                time.sleep(BACKOFF_S * attempt)
            try:
                return clean(generator.complete(prompt, config.temperature, config.max_tokens), step)
            except (CallFailed, MalformedOutput) as exc:
                reason = str(exc)
        raise UnitFailed(step, f"{step}: {reason} (after {config.retries + 1} tries)")

    return ask


def finish(config: RecipeConfig, folder: Path, workspace: Path, events, counts: dict) -> dict:
    rows = read_jsonl(folder / ROWS_FILE)
    if not rows:
        why = counts["last"] or "no call succeeded"
        return events.emit("end", status="failed", error=f"no row was generated: {why}", **_public(counts))
    saved = save_recipe_rows(config, folder, workspace, rows)
    return events.emit("end", status="completed", dataset=config.name, saved_rows=saved, **_public(counts))


def _public(counts: dict) -> dict:
    return {k: v for k, v in counts.items() if k != "last"}


def _unit(chunk: Chunk, k: int) -> str:
    return f"c{chunk.index}-{k}"


def _chunk_line(chunk: Chunk) -> str:
    record = {"index": chunk.index, "text": chunk.text, "source": chunk.source, "tokens": chunk.tokens}
    return json.dumps(record, ensure_ascii=False) + "\n"


def _file_errors(reports) -> str:
    return "; ".join(f"{Path(r.path).name}: {r.error}" for r in reports if r.error) or "the documents are empty"


def _abort_on_signal(signum, frame):
    raise Aborted()


def main_loop(config: RecipeConfig, folder: Path, workspace: Path, api_key: str) -> int:
    prepare_folder(config, folder)
    end = run(config, folder, workspace, api_key)
    line = f"recipe {config.name}: {end['status']}"
    if end.get("error"):
        line += f": {end['error']}"
    if end["status"] == "completed":
        line += f": {end['saved_rows']} rows saved as dataset '{config.name}' ({end['failed_calls']} failed calls)"
    print(line, file=sys.stderr if end["status"] != "completed" else sys.stdout, flush=True)
    return {"completed": 0, "aborted": 130}.get(end["status"], 1)
