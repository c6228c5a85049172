"""Shared fixtures: an isolated workspace, the embedded model converted once, a tiny model, tiny datasets.

Two tiers of tests share them:
- the tiny model (`tiny_model`: 2 layers, hidden size 64, SmolLM2's real tokenizer and chat
  template) carries every test of plumbing: queue, abort, resume, failures, export, formats, API;
- the embedded SmolLM2-135M carries the tests where learning or real timing is the point; they
  are marked `slow` (`make test-fast` leaves them out, `make test` runs everything).
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from backend.cycle_collector import hold, settle
from tests.helpers import (
    CHROMIUM_ARGS,
    ENCODERS,
    LLAMAFACTORY_DATA,
    ROOT,
    SMALL_VOCAB,
    PostgresServer,
    allow_dirs,
    build_gguf_tiny_model,
    build_small_vocab_model,
    build_tiny_model,
    finish,
    postgres_bin,
    start_app,
    stop_app,
    tiny_model_name,
)

# Tests never touch the hub, and share one converted model cache inside the checkout.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ["GRADIO_ANALYTICS_ENABLED"] = "False"
# ...and with analytics off, the first gr.Blocks a test builds sets this itself. Set before any job server
# starts, so that one is not restarted for a changed import-time environment (backend.runfiles.IMPORT_TIME_ENV):
# 2 of the suite's job servers were, about 7 CPU-s each (the app sets it before its server starts).
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "True"
os.environ.setdefault("TUNEFORGE_CACHE", str(ROOT / ".cache" / "tuneforge"))
# Under pytest-xdist two workers share the cores. A torch process (a worker, its jobs, its apps) with
# a thread per core would then wait at every OpenMP barrier for a core the other worker holds: a step
# took 50 times longer. One thread each keeps every core busy without that. (A third worker did not pay:
# the same commit's clean suite took 1,217 s with three and 1,096 s with two, on a 2-core Zen 3.)
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ.setdefault("OMP_NUM_THREADS", "1")


# pytest-xdist hands each worker a whole file at a time (`--dist loadfile`), in collection order once
# `--no-loadscope-reorder` stops it sorting files by their number of tests (which put the one-test files,
# the GRPO demo among them, last, and left a worker idle for minutes at the end). Longest first, as they ran
# in a warm suite on a 2-core Zen 4 (2026-12-08), so that what is left at the end is short files and the
# workers finish together (ordered by the 2026-12-06 list, the vision models' 38 s ran last, alone, for 24 s).
# A file missing here only runs later; nothing else depends on this order.
LONGEST_FIRST = (
    "test_browser.py", "test_grpo_demo.py", "test_gguf_export.py", "test_llamafactory.py", "test_multinode.py",
    "test_preference.py", "test_benchmarks.py", "test_recipes.py", "test_vision_models.py", "test_serve.py",
    "test_ddp.py", "test_sweeps.py", "test_teams.py", "test_train_cli.py", "test_api.py", "test_architectures.py",
    "test_benchmark_browser.py", "test_sweeps_postgres.py", "test_load.py", "test_classification.py",
    "test_access.py", "test_evaluate.py", "test_warm_jobs.py", "test_failures.py", "test_serve_limits.py",
    "test_interruptions.py", "test_regional_compile.py", "test_cycle_collector.py", "test_eval_generation.py",
    "test_layering.py", "test_attack.py", "test_jobs.py", "test_confinement.py", "test_grpo.py",
)  # fmt: skip


def pytest_collection_modifyitems(config, items):
    rank = {name: place for place, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))


def pytest_configure(config):
    """A process that collects imports torch, transformers, gradio and the rest while it does, as the studio's
    processes do (backend.cycle_collector): every Trainer.train() in it then starts with a full collection that
    walks only what the tests made. test_architectures.py alone went from 47 s to 38 s. Not pytest-xdist's
    controller, which collects nothing (its workers do), so would never settle."""
    if os.environ.get("PYTEST_XDIST_WORKER") or not getattr(config.option, "numprocesses", None):
        hold()


def pytest_collection_finish(session):
    settle()


def built_once(name: str):
    """A lock around building something into the shared model cache, so two workers do not both build it."""
    from filelock import FileLock

    from backend.paths import model_cache_dir

    model_cache_dir().mkdir(parents=True, exist_ok=True)
    return FileLock(str(model_cache_dir() / f".{name}.lock"))


@pytest.fixture(scope="session")
def default_model_dir() -> Path:
    """The embedded SmolLM2 converted to safetensors (converted on the first test run only)."""
    from backend.models.sources import DEFAULT_MODEL_NAME, default_model_dir

    with built_once(DEFAULT_MODEL_NAME):
        return default_model_dir(progress=lambda msg: None)


@pytest.fixture(scope="session")
def tiny_model_of(default_model_dir):
    """model_type → a randomly initialised 2-layer model of that architecture, built once into the model cache.

    A causal LM sits beside SmolLM2's tokenizer and chat template; an encoder (tests.helpers.ENCODERS)
    beside the embedded MiniLM's BERT tokenizer. In the model cache, so a confined app may load it as
    it may load the default model. Random weights are seeded, so every run of the suite trains the same model.
    """
    from backend.models.sources import default_encoder_dir
    from backend.paths import model_cache_dir

    def folder(model_type: str) -> Path:
        target = model_cache_dir() / tiny_model_name(model_type)
        with built_once(target.name):
            if not (target / "config.json").exists():
                tokenizer_dir = default_encoder_dir() if model_type in ENCODERS else default_model_dir
                build_tiny_model(target, model_type, tokenizer_dir)
        return target

    return folder


@pytest.fixture(scope="session")
def small_vocab_model_of(default_model_dir):
    """model_type (llama, qwen2) → a tiny model with a 320-token tokenizer and SmolLM2's chat template, built
    once into the model cache (a confined app may load it). For the GGUF tests, whose read-back of SmolLM2's
    vocabulary costs 11 s a file."""
    from backend.paths import model_cache_dir

    texts = [f"{q} {a}" for q, a in SECRET_QA] + [
        "You are a helpful AI assistant named SmolLM, trained by Hugging Face",  # the template's default system
        "system user assistant Write one sentence about the sea. The sea is wide and deep.",
    ]

    def folder(model_type: str) -> Path:
        target = model_cache_dir() / f"tiny-{model_type}-vocab-{SMALL_VOCAB}"
        with built_once(target.name):
            if not (target / "config.json").exists():
                build_small_vocab_model(target, model_type, default_model_dir, texts * 20)
        return target

    return folder


@pytest.fixture(scope="session")
def gguf_tiny_model_of(default_model_dir):
    """model_type → a tiny random model shaped for llama.cpp's k-quants (tests.helpers.build_gguf_tiny_model),
    built once into the model cache (a confined app may load it)."""
    from backend.paths import model_cache_dir

    def folder(model_type: str) -> Path:
        target = model_cache_dir() / f"gguf-tiny-{model_type}"
        with built_once(target.name):
            if not (target / "config.json").exists():
                build_gguf_tiny_model(target, model_type, default_model_dir)
        return target

    return folder


@pytest.fixture(scope="session")
def small_model(small_vocab_model_of) -> str:
    """The `model:` option of the tiny llama with a 320-token vocabulary: where SmolLM2's 49k-token head
    would be most of each step's work (two answers a pair, many sampled completions), for the same plumbing."""
    return str(small_vocab_model_of("llama"))


@pytest.fixture(scope="session")
def tiny_model_dir(tiny_model_of) -> Path:
    """The tiny Llama that carries the tests of plumbing."""
    return tiny_model_of("llama")


@pytest.fixture(scope="session")
def tiny_model(tiny_model_dir) -> str:
    """The `model:` option that trains the tiny model."""
    return str(tiny_model_dir)


@pytest.fixture(scope="session")
def tokenizer(default_model_dir):
    from backend.models.sources import load_tokenizer

    return load_tokenizer(str(default_model_dir))


@pytest.fixture(scope="session")
def postgres():
    """A PostgreSQL server for the session (Debian's postgresql, which `make dev` installs); stopped at the end
    with none of its processes left. Each test takes a database of its own (postgres.create_database)."""
    import pwd
    import shutil

    if not postgres_bin("initdb") or not postgres_bin("pg_ctl"):
        pytest.skip("PostgreSQL is not installed (make dev installs Debian's postgresql package)")
    user = None
    if os.geteuid() == 0:  # the server refuses to run as root
        try:
            user = pwd.getpwnam("postgres").pw_name
        except KeyError:
            pytest.skip("running as root, and there is no postgres user to run the server as")
    server = PostgresServer(user)
    try:
        server.start()
        yield server
    finally:
        server.stop()
        left = server.processes()
        shutil.rmtree(server.data, ignore_errors=True)
        assert not left, f"PostgreSQL processes left running: {left}"


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


# ---- runs on the real models that several modules read: each trains once a suite -----------------
@pytest.fixture(scope="session")
def real_jobs(tmp_path_factory, default_model_dir):
    from backend.runs.job_manager import JobManager

    jobs = JobManager(tmp_path_factory.mktemp("real") / "workspace")
    yield jobs
    jobs.shutdown()


@pytest.fixture(scope="session")
def trained_once(tmp_path_factory, real_jobs):
    """name, options → the id of a finished real-model run in real_jobs' workspace, trained once a suite.

    Such a run takes a minute or more of a 2-core CPU, and under pytest-xdist each worker has its own
    session: the first worker to need a run trains it and keeps a copy beside the workers' folders;
    the others copy that folder into their own workspace, where their job manager reads it as its own.
    """
    import shutil

    from filelock import FileLock

    base = tmp_path_factory.getbasetemp()
    shared = (base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base) / "trained-once"
    shared.mkdir(exist_ok=True)

    def run(name: str, options: dict) -> str:
        kept = shared / name
        with FileLock(str(shared / f".{name}.lock")):
            if (kept / "metrics.json").exists():
                shutil.copytree(kept, real_jobs.runs_dir / name, dirs_exist_ok=True)
                return name
            # A job of its own, as the app starts it: niced, so that the other worker's browser stories keep the
            # CPU they wait on (trained in this process at full priority, they timed out under the load).
            run_id = real_jobs.start({**options, "output_dir": name})
            finish(real_jobs, run_id)
            shutil.copytree(real_jobs.run_dir(run_id), kept)
            return run_id

    return run


@pytest.fixture(scope="session")
def secret_lora_run(trained_once, secret_dataset) -> str:
    """20 LoRA steps of SmolLM2 on the secret dataset, evaluated and checkpointed every 10. Its training loss
    reached 0.01 by step 7 (2026-12-06, Zen 3), so the loss-falls, changed-answers and tuned-beats-base tests
    that read it have their margins well before the end: the 30 steps it took before only cost ~20 s a suite."""
    options = {"dataset": str(secret_dataset), "learning_rate": 1e-3, "lr_scheduler_type": "constant"}
    return trained_once("secret-lora", {**options, "max_steps": 20, "val_size": 4, "eval_steps": 10, "save_steps": 10})


@pytest.fixture(scope="session")
def reviews_run(trained_once) -> str:
    """The issue's bar for classification: ~160 short reviews, 25% validation, 3 epochs (lr 5e-4, the task's)."""
    return trained_once(
        "reviews", {"task": "classification", "dataset": "demo_reviews", "val_size": 0.25, "num_train_epochs": 3}
    )


@pytest.fixture(scope="module")
def page(app):
    """A headless Chromium (Debian's, never a downloaded one) on the module's app, for its browser stories."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app[0])
        yield page
        browser.close()


@pytest.fixture(scope="module")
def app(request, tmp_path_factory, default_model_dir, tiny_model_dir, secret_dataset):
    """A running app with its own workspace: (url, workspace). It may read the secret dataset's folder
    and LLaMA-Factory's demo data, as an owner would allow them with --allow-dir; nothing else outside.
    A module that sets APP_WARM_JOBS = True gets the app's warm job server, as `make run` starts it
    (its log: app-<port>.log beside the workspace); the others, which train once or not at all, do not
    spend its imports."""
    workspace = tmp_path_factory.mktemp("app") / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, *allow_dirs(secret_dataset.parent, LLAMAFACTORY_DATA),
        warm_jobs=getattr(request.module, "APP_WARM_JOBS", False),
    )  # fmt: skip
    yield url, workspace
    stop_app(proc)


@pytest.fixture(scope="session")
def tiny_vision_model_of(default_model_dir):
    """architecture (backend.models.vision_build.ARCHITECTURES) → a seeded random 2-layer vision-language model with
    SmolLM2's tokenizer and a PIL processor, built once into the model cache (a confined app may load it)."""
    from backend.models.vision_build import BUILD, TINY_TEXT, build_vision_model
    from backend.paths import model_cache_dir

    def folder(architecture: str) -> Path:
        target = model_cache_dir() / f"tiny-vision-{architecture}-{BUILD}"
        with built_once(target.name):
            if not (target / "config.json").exists():
                build_vision_model(target, architecture, default_model_dir, TINY_TEXT)
        return target

    return folder


@pytest.fixture(scope="session")
def shapes_dataset(tmp_path_factory) -> Path:
    """A JSON of conversations about coloured squares, LLaMA-Factory's layout, images in a folder beside it."""
    from PIL import Image

    folder = tmp_path_factory.mktemp("shapes")
    (folder / "images").mkdir()
    rows = []
    for i, (name, rgb) in enumerate([("red", (220, 30, 30)), ("blue", (30, 30, 220))] * 2):
        Image.new("RGB", (48 + 8 * i, 40), rgb).save(folder / "images" / f"{i}.png")
        rows.append(
            {
                "messages": [
                    {"role": "user", "content": "<image>What colour is this?"},
                    {"role": "assistant", "content": f"It is {name}."},
                ],
                "images": [f"images/{i}.png"],
            }
        )
    path = folder / "shapes.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path
