"""Benchmark and judge jobs, from the app's side: validate, start, follow, abort and resume them.

A job is `python -m backend.evaluate --job <folder>` in its own process group, as training is, in
`<workspace>/evaluations/<id>/`: spec.json (what to run, the models resolved to weights), events.jsonl
(start, progress, model_done, row, end), job.log and result.json. Its status comes from those
files alone, so it carries on without a browser. A judge's API key is handed to the job in its
environment and written nowhere. Everything a request names is checked here, before a job starts:
task files and their data, models, the judge endpoint (one tiny request).

A job waits its turn in the job manager's line (status "queued"): it starts when no training run,
benchmark or judge is running, and a training run started meanwhile waits for it. Both would crawl
side by side on a small machine. A queued job lives in this app's memory: an app that stops before
its turn leaves it "interrupted", and resume queues it again.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psutil

from backend.errors import TuneForgeError
from backend.evaluation.judge_run import API_KEY_ENV
from backend.events import EventLog, end_event, read_events
from backend.files import write_text_atomically
from backend.paths import PROJECT_ROOT
from backend.runfiles import new_run_id
from backend.runs.job_manager import JobManager
from backend.runs.stopping import stop_group

JOB_MODULE = "backend.evaluate"
SPEC_FILE, RESULT_FILE, LOG_FILE = "spec.json", "result.json", "job.log"
MAX_TASKS, MAX_MODELS, MAX_LIMIT, MAX_FEWSHOT = 50, 8, 100_000, 25
JOB_NICENESS = 10


def _number(request: dict, key: str, default: int | None, high: int) -> int | None:
    value = request.get(key, default)
    if value is None or value == "":
        return default
    if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value or not 0 <= value <= high:
        raise TuneForgeError(f"{key} must be a whole number from 0 to {high}, not {value!r}")
    return int(value)


def _names(request: dict, key: str, high: int) -> list[str]:
    values = request.get(key)
    if isinstance(values, str):
        values = [values]
    if not isinstance(values, list) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise TuneForgeError(f"{key} must be a non-empty list of names")
    if len(values) > high:
        raise TuneForgeError(f"{key}: at most {high}")
    return [v.strip() for v in values]


class EvalJobs:
    def __init__(self, jobs: JobManager):
        self.jobs = jobs
        self.root = jobs.workspace / "evaluations"
        self.root.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._procs: dict[str, subprocess.Popen] = {}
        self._adopted = self._find_live_jobs()  # id -> pid, for jobs an earlier app process started
        jobs.share_line(self.running)

    # ---- what a request names ------------------------------------------------------------
    def model_spec(self, name: str, runs: list[str]) -> dict[str, Any]:
        """A model name ('base', 'base:<model>', a completed run id) as weights an HFLM (or the judge) loads."""
        from backend.models.sources import is_adapter_dir, resolve_model

        if name == "base" or name.startswith("base:"):
            model = name.partition(":")[2] or self._base_of(runs)
            self.jobs.confinement.model(model)
            return {"name": name, "pretrained": resolve_model(model, progress=lambda m: None), "template": "chatml"}
        status = self.jobs.status(name)
        if status["status"] != "completed":
            raise TuneForgeError(f"run '{name}' is {status['status']}; only completed runs can be evaluated")
        config = self.jobs.config(name)
        if config.get("task") in ("classification", "rm"):
            raise TuneForgeError(f"run '{name}' is a {config.get('task')} run; benchmarks and judges need a generator")
        run_dir = str(self.jobs.run_dir(name))
        spec = {"name": name, "run_dir": run_dir, "tokenizer": run_dir, "template": config.get("template", "chatml")}
        if is_adapter_dir(Path(run_dir)):
            return {**spec, "pretrained": resolve_model(config.get("model", "default")), "peft": run_dir}
        return {**spec, "pretrained": run_dir}

    def _base_of(self, names: list[str]) -> str:
        """'base' is the runs' own base model (the default model without runs); runs of two bases need base:<model>."""
        bases = {self.jobs.config(n).get("model", "default") for n in names if not n.startswith("base")}
        if len(bases) > 1:
            named = ", ".join(sorted(bases))
            raise TuneForgeError(f"these runs have different base models ({named}); name one as base:<model>")
        return bases.pop() if bases else "default"

    def _models(self, names: list[str]) -> list[dict[str, Any]]:
        if len(set(names)) != len(names):
            raise TuneForgeError("models: each model once")
        return [self.model_spec(n, names) for n in names]

    def _tasks(self, paths: list[str], folder: Path) -> list[dict[str, Any]]:
        from backend.evaluation.bench_tasks import task_configs

        configs = []
        for path in paths:
            resolved = self.jobs.confinement.tree(Path(path).expanduser(), "benchmark task")
            for config in task_configs(resolved, folder):
                for data in _data_paths(config):
                    self.jobs.confinement.path(data, f"benchmark task {resolved.name}'s data")
                configs.append(config)
        names = [c["task"] for c in configs]
        if len(set(names)) != len(names):
            raise TuneForgeError("two benchmark tasks have the same name; rename one (its 'task' key or folder)")
        return configs

    # ---- starting -------------------------------------------------------------------------
    def benchmark_start(self, request: dict[str, Any], owner: str | None = None) -> str:
        """{"tasks": [path, ...], "models": ["base", run_id, ...], "num_fewshot": k, "limit": n} → its id."""
        _only(request, ("tasks", "models", "num_fewshot", "limit", "batch_size"))
        tasks, names = _names(request, "tasks", MAX_TASKS), _names(request, "models", MAX_MODELS)
        spec = {
            "kind": "benchmark",
            "num_fewshot": _number(request, "num_fewshot", 0, MAX_FEWSHOT),
            "limit": _number(request, "limit", None, MAX_LIMIT),
            "batch_size": _number(request, "batch_size", 8, 256) or 1,
            "request": {"tasks": tasks, "models": names},
            "owner": owner,
        }
        folder = self._new_folder()
        try:  # the tasks first: a bad file is refused before a model is looked for (or converted)
            spec["tasks"] = self._tasks(tasks, folder)
            spec["models"] = self._models(names)
        except TuneForgeError:
            _remove(folder)
            raise
        return self._queue(folder, spec)

    def judge_start(self, request: dict[str, Any], owner: str | None = None) -> str:
        """{"models": [a, b], "dataset": path, "limit": n, "judge": {base_url, model, api_key}} → its id."""
        from backend.evaluation.evaluate import Evaluator
        from backend.evaluation.judge import JudgeClient

        _only(request, ("models", "dataset", "limit", "judge", "max_new_tokens"))
        names = _names(request, "models", 2)
        if len(names) != 2:
            raise TuneForgeError("models: name two, [a, b] (b is judged against a)")
        endpoint = request.get("judge")
        if not isinstance(endpoint, dict):
            raise TuneForgeError("judge must be {base_url, model, api_key}")
        _only(endpoint, ("base_url", "model", "api_key"), "judge")
        client = JudgeClient(endpoint)
        limit = _number(request, "limit", 20, 1000) or 20
        max_new = _number(request, "max_new_tokens", 128, 1024) or 128
        dataset = request.get("dataset") or None
        if dataset is not None and not isinstance(dataset, str):
            raise TuneForgeError("dataset must be a path")
        models = self._models(names)
        held_out_of = next((n for n in reversed(names) if not n.startswith("base")), "base")
        examples = Evaluator(self.jobs, None).held_out(held_out_of, dataset, limit)  # type: ignore[arg-type]
        prompts = [e["messages"] for e in examples if "messages" in e]
        if not prompts:
            raise TuneForgeError("no chat prompts in the held-out rows to judge")
        client.check()  # in one line, before any answer is generated
        spec = {
            "kind": "judge",
            "models": models,
            "prompts": prompts,
            "max_new_tokens": max_new,
            "judge": {"base_url": client.base_url, "model": client.model},
            "request": {"models": names, "dataset": dataset, "limit": limit},
            "owner": owner,
        }
        return self._queue(self._new_folder(), spec, api_key=client.api_key)

    def _new_folder(self) -> Path:
        folder = self.root / new_run_id()
        folder.mkdir(parents=True)
        return folder

    def _queue(self, folder: Path, spec: dict[str, Any] | None = None, api_key: str = "") -> str:
        """Write the spec and wait in the job manager's line; the key stays in memory until the job starts."""
        if spec is not None:
            write_text_atomically(folder / SPEC_FILE, json.dumps(spec, ensure_ascii=False, indent=1))
        EventLog(folder).emit("queue", pid=os.getpid())  # whose line it waits in, for another process's status
        self.jobs.enqueue(str(folder), lambda: self._launch(folder, api_key))
        return folder.name

    def running(self) -> bool:
        """Whether a job of this app's (or one an earlier app process started) runs now."""
        with self._lock:
            if any(proc.poll() is None for proc in self._procs.values()):
                return True
            self._adopted = {job: pid for job, pid in self._adopted.items() if _is_job_process(pid)}
            return bool(self._adopted)

    def _find_live_jobs(self) -> dict[str, int]:
        live = {}
        for folder in self.root.iterdir():
            events = read_events(folder) if (folder / SPEC_FILE).exists() else []
            pid = _start_pid(events)
            if pid and end_event(events) is None and _is_job_process(pid):
                live[folder.name] = pid
        return live

    def _launch(self, folder: Path, api_key: str = "") -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1", "TUNEFORGE_WORKSPACE": str(self.jobs.workspace)}
        env.pop(API_KEY_ENV, None)
        if api_key:
            env[API_KEY_ENV] = api_key
        with open(folder / LOG_FILE, "ab") as log:
            proc = subprocess.Popen(
                [sys.executable, "-m", JOB_MODULE, "--job", str(folder)],
                cwd=PROJECT_ROOT,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=lambda: os.nice(JOB_NICENESS),  # noqa: PLW1509 - only a nice() before exec
            )
        with self._lock:
            self._procs[folder.name] = proc

    # ---- following ------------------------------------------------------------------------
    def folder(self, job_id: str) -> Path:
        job_id = str(job_id).strip()
        path = (self.root / job_id).resolve()
        if not job_id or "\0" in job_id or path.parent != self.root.resolve() or not (path / SPEC_FILE).exists():
            raise TuneForgeError(f"no benchmark or judge job named '{job_id[:80]}'")
        return path

    def spec(self, job_id: str) -> dict[str, Any]:
        return json.loads((self.folder(job_id) / SPEC_FILE).read_text(encoding="utf-8"))

    def status(self, job_id: str, kind: str | None = None) -> dict[str, Any]:
        folder, spec = self.folder(job_id), self.spec(job_id)
        if kind and spec["kind"] != kind:
            raise TuneForgeError(f"'{job_id}' is a {spec['kind']} job, not a {kind} job")
        position = self.jobs.position(str(folder))
        events = read_events(folder)
        end, alive = end_event(events), self._alive(job_id, events)
        if position is not None or (end is None and not alive and _queued_elsewhere(events)):
            state = "queued"  # waiting for a training run (or another job) to end
        else:
            state = end["status"] if end else ("running" if alive else "interrupted")
        progress = next((e for e in reversed(events) if e["type"] == "progress"), None)
        status = {"id": job_id, "kind": spec["kind"], "status": state, "error": (end or {}).get("error")}
        status["queue_position"] = position
        keys = ("model", "model_index", "models", "done", "total")
        status["progress"] = {k: progress.get(k) for k in keys} if progress else None
        status["request"] = spec.get("request")
        result = _read_json(folder / RESULT_FILE)
        if spec["kind"] == "benchmark":
            so_far = [r for e in events if e["type"] == "model_done" for r in e["rows"]]
            rows = result.get("results") if result else so_far
            return {**status, "results": rows or []}
        from backend.evaluation.judge import summary

        rows = result.get("rows") if result else [e["row"] for e in events if e["type"] == "row"]
        return {**status, **summary(rows or []), "rows": rows or [], "judge": spec.get("judge")}

    def _alive(self, job_id: str, events: list[dict[str, Any]]) -> bool:
        with self._lock:
            proc = self._procs.get(job_id)
        if proc is not None:
            return proc.poll() is None
        return _is_job_process(_start_pid(events))

    def list_jobs(self, kind: str | None = None) -> list[dict[str, Any]]:
        found = []
        for folder in sorted(self.root.iterdir(), reverse=True):
            if (folder / SPEC_FILE).exists():
                try:
                    found.append(self.status(folder.name))
                except (TuneForgeError, ValueError, OSError):
                    continue
        return [j for j in found if kind is None or j["kind"] == kind]

    # ---- stopping and going on ------------------------------------------------------------
    def abort(self, job_id: str) -> None:
        folder = self.folder(job_id)
        if self.jobs.dequeue(str(folder)):
            EventLog(folder).emit("end", status="aborted", error="aborted before it started; resume queues it again")
            return
        events = read_events(folder)
        if end_event(events) or not self._alive(job_id, events):
            raise TuneForgeError(f"'{job_id}' is not running")
        with self._lock:  # kept in _procs until it exits: the next job in line waits for it
            proc = self._procs.get(job_id)
        pid = proc.pid if proc else _start_pid(events)
        stop_group(pid, lambda: proc is not None and proc.poll() is not None)
        if proc is not None:
            proc.wait()
            with self._lock:
                self._procs.pop(job_id, None)
        EventLog(folder).emit("end", status="aborted", error="aborted by the user; resume it to go on")

    def resume(self, job_id: str, api_key: str = "") -> str:
        """Go on with an aborted, interrupted or failed job: what it had scored is kept (lm-eval's cache, its rows)."""
        state = self.status(job_id)["status"]
        if state not in ("aborted", "interrupted", "failed"):
            raise TuneForgeError(f"'{job_id}' is {state}; only an aborted, interrupted or failed job can resume")
        folder = self.folder(job_id)
        EventLog(folder).emit("resume")
        return self._queue(folder, api_key=api_key)

    def wait(self, job_id: str, timeout: float = 600) -> dict[str, Any]:
        deadline = time.time() + timeout
        while time.time() < deadline:
            status = self.status(job_id)
            if status["status"] not in ("queued", "running"):
                return status
            time.sleep(0.3)
        raise TuneForgeError(f"'{job_id}' still running after {timeout:.0f} s")


def _only(request: Any, keys: tuple[str, ...], what: str = "request") -> None:
    if not isinstance(request, dict):
        raise TuneForgeError(f"{what} must be a JSON object")
    unknown = [str(k)[:40] for k in request if k not in keys]
    if unknown:
        raise TuneForgeError(f"{what}: unknown key(s) {', '.join(unknown)} (known: {', '.join(keys)})")


def _data_paths(config: dict[str, Any]) -> list[str]:
    files = (config.get("dataset_kwargs") or {}).get("data_files")
    found: list[str] = []

    def walk(value):
        if isinstance(value, dict):
            for v in value.values():
                walk(v)
        elif isinstance(value, list):
            for v in value:
                walk(v)
        elif value:
            found.append(str(value))

    walk(files)
    if config.get("dataset_path") and Path(str(config["dataset_path"])).is_absolute():
        found.append(str(config["dataset_path"]))
    return found


def _start_pid(events: list[dict[str, Any]]) -> int | None:
    return next((e.get("pid") for e in reversed(events) if e["type"] == "start"), None)


def _queued_elsewhere(events: list[dict[str, Any]]) -> bool:
    """Whether the job waits in another live process's line (a CLI's, while this app trains)."""
    latest = next((e for e in reversed(events) if e["type"] in ("queue", "start")), None)
    pid = latest.get("pid") if latest and latest["type"] == "queue" else None
    return bool(pid) and pid != os.getpid() and psutil.pid_exists(pid)


def _is_job_process(pid: int | None) -> bool:
    """Whether pid is alive and still a benchmark or judge job (pids are reused)."""
    try:
        process = psutil.Process(pid) if pid else None
        return bool(process) and process.status() != psutil.STATUS_ZOMBIE and JOB_MODULE in process.cmdline()
    except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
        return False


def _read_json(path: Path) -> dict[str, Any] | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _remove(folder: Path) -> None:
    import shutil

    shutil.rmtree(folder, ignore_errors=True)
