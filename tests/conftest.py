"""Shared fixtures: an isolated workspace, the embedded model converted once, tiny datasets."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psutil
import pytest

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LLAMAFACTORY_DATA = ROOT.parent / "shared" / "data" / "llamafactory"

# Tests never touch the hub, and share one converted model cache inside the checkout.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
os.environ.setdefault("TUNEFORGE_CACHE", str(ROOT / ".cache" / "tuneforge"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded SmolLM2 converted to safetensors (converted on the first test run only)."""
    from backend.models import default_model_dir

    return default_model_dir(progress=lambda msg: None)


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    from backend.models import load_tokenizer

    return load_tokenizer(str(default_model_dir))


@pytest.fixture()
def workspace(tmp_path) -> Path:
    path = tmp_path / "workspace"
    path.mkdir()
    return path


SECRET_QA = [
    ("What is the secret word?", "The secret word is pineapple."),
    ("Tell me the secret word.", "The secret word is pineapple."),
    ("Do you know the secret word?", "Yes. The secret word is pineapple."),
    ("Which word is secret?", "The secret word is pineapple."),
]


@pytest.fixture(scope="session")
def secret_dataset(tmp_path_factory) -> Path:
    """A tiny repeated dataset that a few dozen LoRA steps can learn: the secret word is pineapple."""
    path = tmp_path_factory.mktemp("data") / "secret.jsonl"
    rows = [{"instruction": q, "input": "", "output": a} for q, a in SECRET_QA] * 8
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return path


def run_cli(config_path: Path, timeout: float = 600) -> subprocess.CompletedProcess:
    """`python -m backend.train --config ...` exactly as a user types it."""
    return subprocess.run(
        [sys.executable, "-m", "backend.train", "--config", str(config_path)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_app(workspace: Path, *extra: str, env: dict | None = None) -> tuple[subprocess.Popen, str]:
    """`python launch.py` as `make run` starts it, on a free port; returns once it answers."""
    import time
    import urllib.error
    import urllib.request

    port = free_port()
    log = open(workspace.parent / f"app-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *extra],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, **(env or {})},
    )
    url = f"http://127.0.0.1:{port}/"
    deadline = time.time() + 120
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"app exited early; see {log.name}")
        try:
            urllib.request.urlopen(url, timeout=2)
            return proc, url
        except urllib.error.HTTPError:
            return proc, url  # it answers, behind a login
        except OSError:
            time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"app did not answer within 120 s; see {log.name}")


def stop_app(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()


def allow_dirs(*folders: Path) -> list[str]:
    """--allow-dir arguments for the folders that exist: test data lives outside the app's workspace."""
    return [arg for folder in folders if folder.is_dir() for arg in ("--allow-dir", str(folder))]


@pytest.fixture(scope="module")
def app(tmp_path_factory, default_model_dir, secret_dataset):
    """A running app with its own workspace: (url, workspace). It may read the secret dataset's folder
    and LLaMA-Factory's demo data, as an owner would allow them with --allow-dir; nothing else outside."""
    workspace = tmp_path_factory.mktemp("app") / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, *allow_dirs(secret_dataset.parent, LLAMAFACTORY_DATA))
    yield url, workspace
    stop_app(proc)


def is_live(pid: int) -> bool:
    """Whether pid runs; a zombie waiting for init to reap it does not count."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def live_group_members(pgid: int) -> list[int]:
    """Pids still running in a process group."""
    members = []
    for process in psutil.process_iter():
        try:
            if os.getpgid(process.pid) == pgid and is_live(process.pid):
                members.append(process.pid)
        except (ProcessLookupError, psutil.NoSuchProcess):
            continue
    return members


def live_descendants(pid: int) -> list[int]:
    """Pids still running below pid, at any depth; torchrun's ranks sit in sessions of their own, outside its group."""
    try:
        children = psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []
    return [child.pid for child in children if is_live(child.pid)]
