"""The app's side of recipes: start, watch, abort and resume recipe jobs, and review and save their rows.

Each recipe is `python -m backend.recipe --config <workspace>/recipes/<name>/recipe.yaml` in its own process
group, like a training job (backend.runs.job_manager), with its output in recipe.log there; the API key reaches it
through its environment only. Status comes from the folder's files, so a recipe carries on when the browser
goes away, and one that died without its end is `interrupted`, to resume. A recipe's id is its dataset name:
starting a recipe of that name again with the same sources and settings continues it; with other settings it
starts over (the folder's rows are those of the settings it records).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import psutil
import yaml

from backend.errors import TuneForgeError
from backend.events import EventLog, end_event
from backend.paths import PROJECT_ROOT
from backend.recipes.chunking import Chunk, chunk_files, token_counter
from backend.recipes.documents import FileReport, read_sources
from backend.recipes.folder import CHUNKS_FILE, CONFIG_NAME, FAILURES_FILE, LOG_NAME, ROWS_FILE, read_jsonl
from backend.recipes.generators import RECIPE_KEY_ENV
from backend.recipes.saving import review, save_dataset
from backend.recipes.settings import RecipeConfig
from backend.recipes.worker import prepare_folder
from backend.runfiles import EVENTS_FILE, NICE_ENV
from backend.runs.stopping import stop_group

CONTRACT_KEYS = ("sources", "generator", "kind", "chunk_tokens", "per_chunk", "name")
OWNER_NAME = "owner.txt"
RECIPE_MODULE = "backend.recipe"


class RecipeJobs:
    def __init__(self, jobs):
        """jobs: the app's JobManager, for its workspace, its confinement and its completed runs."""
        self.jobs = jobs
        self.root = jobs.workspace / "recipes"
        self._lock = threading.Lock()
        self._running: dict[str, subprocess.Popen] = {}

    # ---- starting -------------------------------------------------------------------------
    def start(self, spec: dict[str, Any], owner: str | None = None) -> str:
        """Check the spec (the contract's keys plus any RecipeConfig option), then start its job; the recipe id."""
        config, api_key = self.checked(spec)
        folder = self.root / config.name
        with self._lock:
            if self._alive(config.name):
                raise TuneForgeError(f"recipe '{config.name}' is running; abort it first, or choose another name")
            if (folder / CONFIG_NAME).exists() and _fingerprint(folder) != config.fingerprint():
                _clear(folder)  # other sources or settings: a new recipe under the old name
            config.output_dir = str(folder)
            prepare_folder(config, folder)
            (folder / OWNER_NAME).write_text(owner or "", encoding="utf-8")
            self._launch(config.name, folder, api_key)
        return config.name

    def checked(self, spec: dict[str, Any]) -> tuple[RecipeConfig, str]:
        if not isinstance(spec, dict):
            raise TuneForgeError(f"recipe_start takes a dict with {', '.join(CONTRACT_KEYS)}")
        options = dict(spec)
        generator = options.get("generator", "base")
        api_key = ""
        if isinstance(generator, dict) and "api_key" in generator:
            generator = dict(generator)
            api_key = generator.pop("api_key") or ""
            options["generator"] = generator
        options.pop("output_dir", None)  # the app decides where recipes live
        config = RecipeConfig.from_dict(options)
        config.sources = [str(self._confined_source(s)) for s in config.sources]
        self._check_generator(config.generator)
        _check_key(api_key)
        self.jobs.confinement.model(config.model, "tokenizer model")
        return config, api_key

    def _confined_source(self, source: str) -> Path:
        path = self.jobs.confinement.path(source, "source")
        if path.is_dir():
            self.jobs.confinement.tree(path, "source folder")
        elif not path.is_file():
            raise TuneForgeError(f"source {source}: no such file or folder")
        return path

    def _check_generator(self, generator) -> None:
        if isinstance(generator, dict) and "run" in generator:
            status = self.jobs.status(generator["run"])["status"]
            if status != "completed":
                raise TuneForgeError(f"generator run '{generator['run']}' is {status}; use a completed run")
        elif isinstance(generator, str) and generator.startswith("base:"):
            self.jobs.confinement.model(generator.partition(":")[2], "generator model")

    def resume(self, recipe_id: str, api_key: str = "") -> str:
        """Go on with an aborted, failed or interrupted recipe: its rows are kept, its failed units asked again."""
        folder = self.folder(recipe_id)
        _check_key(api_key)
        with self._lock:
            if self._alive(recipe_id):
                raise TuneForgeError(f"recipe '{recipe_id}' is running")
            self._launch(recipe_id, folder, api_key)
        return recipe_id

    def _launch(self, recipe_id: str, folder: Path, api_key: str) -> None:
        command = [sys.executable, "-m", RECIPE_MODULE, "--config", str(folder / CONFIG_NAME)]
        command += ["--workspace", str(self.jobs.workspace)]
        env = {**os.environ, "PYTHONUNBUFFERED": "1", NICE_ENV: "10", RECIPE_KEY_ENV: api_key}
        with open(folder / LOG_NAME, "ab") as log:
            self._running[recipe_id] = subprocess.Popen(
                command, cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: abort stops it and whatever it started
            )  # fmt: skip

    # ---- watching ---------------------------------------------------------------------------
    def folder(self, recipe_id: str) -> Path:
        if not isinstance(recipe_id, str) or "/" in recipe_id or recipe_id.startswith(".") or not recipe_id:
            raise TuneForgeError(f"no recipe named {recipe_id!r}")
        folder = self.root / recipe_id
        if not (folder / CONFIG_NAME).is_file():
            raise TuneForgeError(f"no recipe named {recipe_id!r}")
        return folder

    def config(self, recipe_id: str) -> RecipeConfig:
        return RecipeConfig.from_dict(yaml.safe_load((self.folder(recipe_id) / CONFIG_NAME).read_text("utf-8")))

    def status(self, recipe_id: str) -> dict[str, Any]:
        """status (running|completed|failed|aborted|interrupted), rows, dataset, failed_calls, files, and
        done, total, eta_s, retried_calls, saved_rows, error."""
        folder = self.folder(recipe_id)
        events = read_jsonl(folder / EVENTS_FILE)
        end = end_event(events)
        attempt = _last_attempt(events)
        progress = next((e for e in reversed(attempt) if e["type"] == "progress"), {})
        files = next((e["files"] for e in reversed(events) if e["type"] == "files"), [])
        status = end["status"] if end else "running" if self._alive(recipe_id) else "interrupted"
        result = {
            "status": status,
            "rows": len(read_jsonl(folder / ROWS_FILE)),
            "dataset": end.get("dataset") if end and status == "completed" else None,
            "failed_calls": len(read_jsonl(folder / FAILURES_FILE)),
            "files": files,
            "done": progress.get("done", 0),
            "total": progress.get("total"),
            "eta_s": progress.get("eta_s") if status == "running" else None,
            "retried_calls": progress.get("retried_calls", 0),
            "saved_rows": end.get("saved_rows") if end and status == "completed" else None,
            "error": end.get("error") if end and status != "completed" else None,
        }
        if status == "interrupted":
            result["error"] = "the recipe stopped without reporting an end; resume it to go on" + _log_tail(folder)
        return result

    def list_recipes(self) -> list[str]:
        if not self.root.is_dir():
            return []
        found = [p for p in self.root.iterdir() if (p / CONFIG_NAME).is_file()]
        return [p.name for p in sorted(found, key=lambda p: p.stat().st_mtime, reverse=True)]

    def owner(self, recipe_id: str) -> str | None:
        path = self.folder(recipe_id) / OWNER_NAME
        return (path.read_text(encoding="utf-8").strip() or None) if path.exists() else None

    def _alive(self, recipe_id: str) -> bool:
        proc = self._running.get(recipe_id)
        if proc is not None:
            return proc.poll() is None
        events = read_jsonl(self.root / recipe_id / EVENTS_FILE)
        start = next((e for e in reversed(events) if e["type"] == "start"), None)
        return bool(start) and end_event(events) is None and _is_recipe_process(start.get("pid"))

    # ---- stopping ---------------------------------------------------------------------------
    def abort(self, recipe_id: str) -> None:
        """Stop the recipe's job; the rows it wrote stay, and a resume goes on from them."""
        folder = self.folder(recipe_id)
        proc = self._running.get(recipe_id)
        events = read_jsonl(folder / EVENTS_FILE)
        start = next((e for e in reversed(events) if e["type"] == "start"), None)
        pid = proc.pid if proc is not None else (start or {}).get("pid")
        if pid and (proc.poll() is None if proc is not None else _is_recipe_process(pid)):
            stop_group(
                pid, (lambda: proc.poll() is not None) if proc is not None else lambda: not _is_recipe_process(pid)
            )
        if end_event(read_jsonl(folder / EVENTS_FILE)) is None:
            EventLog(folder).emit("end", status="aborted", error="aborted by the user")

    def shutdown(self) -> None:
        for recipe_id, proc in list(self._running.items()):
            if proc.poll() is None:
                self.abort(recipe_id)

    # ---- reviewing and saving -----------------------------------------------------------------
    def review_rows(self, recipe_id: str) -> list[dict]:
        """Every generated row with its flags, its chunk's text under `chunk_text`, in the order generated."""
        folder, config = self.folder(recipe_id), self.config(recipe_id)
        chunks = {c["index"]: c["text"] for c in read_jsonl(folder / CHUNKS_FILE)}
        rows = review(config, read_jsonl(folder / ROWS_FILE), chunks)
        return [{**row, "chunk_text": chunks.get(row.get("chunk"), "")} for row in rows]

    def save_reviewed(self, recipe_id: str, rows: list[dict], name: str = "") -> int:
        """Save the rows a person kept and edited as the named dataset (the recipe's name unless given)."""
        config = self.config(recipe_id)
        if name and name != config.name:
            config = RecipeConfig.from_dict({**config.to_dict(), "name": name})
        if not rows:
            raise TuneForgeError("no rows are kept: keep at least one row to save a dataset")
        return save_dataset(
            self.jobs.workspace, config, [{k: v for k, v in r.items() if k != "chunk_text"} for r in rows]
        )


def preview_chunks(
    sources: list[str], chunk_tokens: int, overlap: int, model: str
) -> tuple[list[FileReport], list[Chunk]]:
    """What a recipe would read and how it would cut it, before any generator is asked."""
    config = RecipeConfig.from_dict(
        {"name": "preview", "sources": sources, "chunk_tokens": chunk_tokens, "overlap_tokens": overlap, "model": model}
    )
    reports = read_sources(config.sources)
    return reports, chunk_files(reports, token_counter(config.model), config.chunk_tokens, config.overlap_tokens)


def _check_key(api_key) -> None:
    if not isinstance(api_key, str) or len(api_key) > 4096 or "\n" in api_key or "\0" in api_key:
        raise TuneForgeError("generator api_key: one line of text, at most 4096 characters")


def _fingerprint(folder: Path) -> dict:
    try:
        return RecipeConfig.from_dict(yaml.safe_load((folder / CONFIG_NAME).read_text("utf-8"))).fingerprint()
    except (TuneForgeError, yaml.YAMLError, OSError):
        return {}


def _clear(folder: Path) -> None:
    for name in (ROWS_FILE, FAILURES_FILE, CHUNKS_FILE, EVENTS_FILE, "settings.json"):
        (folder / name).unlink(missing_ok=True)
    shutil.rmtree(folder / "tmp", ignore_errors=True)


def _last_attempt(events: list[dict]) -> list[dict]:
    starts = [i for i, e in enumerate(events) if e["type"] == "start"]
    return events[starts[-1] :] if starts else events


def _is_recipe_process(pid) -> bool:
    try:
        process = psutil.Process(int(pid))
        return process.status() != psutil.STATUS_ZOMBIE and RECIPE_MODULE in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess, TypeError, ValueError):
        return False


def _log_tail(folder: Path) -> str:
    path = folder / LOG_NAME
    lines = path.read_text(encoding="utf-8", errors="replace").strip().splitlines() if path.exists() else []
    return f" (its log ends: {lines[-1][:200]})" if lines else ""
