"""Helpers the tests share: running the CLI and the app as a user does, waiting, processes, the browser.

Fixtures live in conftest.py; plain functions live here, so no test file imports another.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import yaml

ROOT = Path(__file__).resolve().parent.parent
DATA = Path(__file__).resolve().parent / "data"
LLAMAFACTORY_DATA = ROOT.parent / "shared" / "data" / "llamafactory"
# Debian's chromium, headless, without the background connections this offline machine refuses.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

# A short chat with a system prompt and two answers: what the template tests render and mask.
CONVERSATION = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Hi there"},
    {"role": "assistant", "content": "Hello! I am Forge."},
    {"role": "user", "content": "Your name?"},
    {"role": "assistant", "content": "Forge."},
]


def write_config(path: Path, **options) -> Path:
    path.write_text(yaml.safe_dump(options), encoding="utf-8")
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


def start_app(
    workspace: Path, *extra: str, env: dict | None = None, warm_jobs: bool = False
) -> tuple[subprocess.Popen, str]:
    """`python launch.py` as `make run` starts it, on a free port; returns once it answers.

    warm_jobs: with the app's warm job server, as `make run` has it. Off by default: an app that trains
    once or not at all would spend the server's imports (a core for ~12 s) for nothing.
    """
    import time
    import urllib.error
    import urllib.request

    from backend.runfiles import WARM_JOBS_ENV

    port = free_port()
    log = open(workspace.parent / f"app-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "launch.py", "--workspace", str(workspace), "--port", str(port), *extra],
        cwd=ROOT,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
        env={**os.environ, WARM_JOBS_ENV: "1" if warm_jobs else "0", **(env or {})},
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


@contextmanager
def app_in_chromium(prefix: str):
    """The app on a fresh workspace (`start_app`) and Debian's headless Chromium, for the scripts that drive the
    page outside pytest (bench/, docs/screenshots/): yields (app process, url, browser); both end on leaving."""
    from playwright.sync_api import sync_playwright

    workspace = Path(tempfile.mkdtemp(prefix=prefix)) / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            try:
                yield proc, url, browser
            finally:
                browser.close()
    finally:
        stop_app(proc)


def allow_dirs(*folders: Path) -> list[str]:
    """--allow-dir arguments for the folders that exist: test data lives outside the app's workspace."""
    return [arg for folder in folders if folder.is_dir() for arg in ("--allow-dir", str(folder))]


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


def wait_for(predicate, timeout=180, interval=0.25):
    """predicate()'s first truthy value, asked every interval seconds; fails after timeout."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError("condition not met in time")


def finish(jobs, run_id, timeout=600) -> dict:
    """Wait for a run to end, and fail unless it completed; returns its status."""
    status = wait_for(lambda: (s := jobs.status(run_id))["status"] not in ("queued", "running") and s, timeout, 0.5)
    assert status["status"] == "completed", status
    return status


# ---- the browser -------------------------------------------------------------------------------
def pick(page, elem_id, option):
    """Choose an option in a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


# ---- tiny random models of each architecture --------------------------------------------------
# Every tiny model's shape, in the names most configs use: the folder name carries it, so a change builds anew.
TINY_SHAPE = {"num_hidden_layers": 2, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4}
WINDOW = 16  # shorter than the test examples, so a sliding-window layer's window is really in play
# What each architecture adds to the shape: its own names for it (GPT-2, DistilBERT), and what its real
# checkpoints carry that training must meet (a sliding window, Gemma's head size beside a tiny hidden size).
TINY_ARCHITECTURES = {
    "llama": {},
    "qwen2": {"use_sliding_window": True, "sliding_window": WINDOW, "max_window_layers": 1},
    "qwen3": {},
    "gemma2": {"head_dim": 16, "sliding_window": WINDOW},  # soft-capped attention and logits, as Gemma 2's
    "gemma3_text": {"head_dim": 16, "sliding_window": WINDOW, "layer_types": ["sliding_attention", "full_attention"]},
    "mistral": {"sliding_window": WINDOW},
    "phi3": {"sliding_window": WINDOW},
    "gpt2": {"n_layer": 2, "n_embd": 64, "n_inner": 128, "n_head": 4, "n_positions": 2048},
    "bert": {"max_position_embeddings": 512},
    "distilbert": {"n_layers": 2, "dim": 64, "hidden_dim": 128, "n_heads": 4, "max_position_embeddings": 512},
    "roberta": {"max_position_embeddings": 514},  # positions start after the padding id
}
ENCODERS = ("bert", "distilbert", "roberta")  # no causal LM head: built beside the embedded MiniLM's BERT tokenizer
DECODER_DEFAULTS = {"num_key_value_heads": 2, "max_position_embeddings": 2048, "tie_word_embeddings": True}


def tiny_model_name(model_type: str) -> str:
    return f"tiny-{model_type}-" + "-".join(f"{value}" for value in TINY_SHAPE.values())


def save_built(target: Path, model, tokenizer) -> None:
    """Save beside target and rename into place, so a concurrent reader never sees half a model."""
    import shutil
    import tempfile

    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    try:
        os.rename(staging, target)
    except OSError:  # another test process built it first
        shutil.rmtree(staging, ignore_errors=True)


def build_tiny_model(target: Path, model_type: str, tokenizer_dir: Path) -> None:
    """A seeded random model of model_type with TINY_SHAPE, saved with the tokenizer of tokenizer_dir into target.

    Written beside target and renamed into place, so a concurrent reader never sees half a model.
    """

    import torch
    from transformers import AutoConfig, AutoModel, AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
    real = AutoConfig.from_pretrained(tokenizer_dir)
    ids = {name: getattr(real, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    shape = {} if model_type in ("gpt2", "distilbert") else TINY_SHAPE
    defaults = {} if model_type in ENCODERS + ("gpt2",) else DECODER_DEFAULTS
    config = AutoConfig.for_model(
        model_type, vocab_size=real.vocab_size, **ids, **shape, **defaults, **TINY_ARCHITECTURES[model_type]
    )
    torch.manual_seed(0)
    model = (AutoModel if model_type in ENCODERS else AutoModelForCausalLM).from_config(config)
    save_built(target, model, tokenizer)


def train_in_process(jobs, options: dict) -> str:
    """A run as JobManager.start lays it out, trained by the job's own main() in this process; returns its id.

    The job's entry point, events and weights are the same as a launched job's; see run_cli_in_process.
    """
    from backend.runfiles import RUN_FILE

    run_id, config = jobs.prepare(options)
    run_dir = Path(config.output_dir)
    run_dir.mkdir(parents=True)
    (run_dir / RUN_FILE).write_text(config.to_yaml(), encoding="utf-8")
    result = run_cli_in_process(run_dir / RUN_FILE)
    assert result.returncode == 0, result.stdout[-3000:]
    return run_id


def run_cli_in_process(config_path: Path) -> subprocess.CompletedProcess:
    """run_cli, but through the job's own main() in this process.

    For tests where what a run leaves behind is the point, not the new process: the start-up of a new
    Python with torch, transformers and peft costs about 12 s on a 2-core CPU, far more than a tiny
    model's training. The tests of launching, aborting and killing jobs keep run_cli and JobManager.
    What the job prints goes to its train.log, as in a launched job, and comes back as both stdout and
    stderr. The process is left as it was: environment, signal handler, standard streams, and
    bitsandbytes, which a job that quantizes nothing hides from its own process.
    """
    import contextlib
    import io
    import signal

    from backend.runfiles import LOG_FILE, LOG_REDIRECTED_ENV
    from backend.train import main

    output_dir = (yaml.safe_load(Path(config_path).read_text(encoding="utf-8")) or {}).get("output_dir")
    environ, hidden = dict(os.environ), "bitsandbytes" not in sys.modules
    on_terminate = signal.getsignal(signal.SIGTERM)  # the job installs its own abort handler
    os.environ[LOG_REDIRECTED_ENV] = "1"  # streams are caught here, not tee'd by the job
    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            code = main(["--config", str(config_path)])
    finally:
        os.environ.clear()
        os.environ.update(environ)
        signal.signal(signal.SIGTERM, on_terminate)
        if hidden and sys.modules.get("bitsandbytes", 0) is None:
            del sys.modules["bitsandbytes"]
    text = printed.getvalue()
    if output_dir and Path(output_dir).is_dir():
        with open(Path(output_dir) / LOG_FILE, "a", encoding="utf-8") as log:
            log.write(text)
    return subprocess.CompletedProcess(["backend.train", "--config", str(config_path)], code, text, text)


SMALL_VOCAB = 320  # bytes (256) and a few merges: a GGUF of it reads back in a fraction of a second


def build_small_vocab_model(target: Path, model_type: str, template_dir: Path, texts: list[str]) -> None:
    """A tiny model of model_type (no sliding window) beside a byte-level BPE tokenizer of SMALL_VOCAB tokens
    trained on texts, with ChatML's special tokens and the chat template of template_dir's tokenizer.

    For GGUF tests: reading a GGUF back parses its whole vocabulary in Python, about 11 s for SmolLM2's
    49,152 tokens and nearly nothing for these. Written beside target and renamed into place."""

    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE())
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
    alphabet = pre_tokenizers.ByteLevel.alphabet()
    bpe.train_from_iterator(texts, trainers.BpeTrainer(vocab_size=SMALL_VOCAB, special_tokens=specials,
                                                       initial_alphabet=alphabet, show_progress=False))  # fmt: skip
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=bpe, bos_token="<|im_start|>", eos_token="<|im_end|>", pad_token="<|endoftext|>"
    )
    tokenizer.chat_template = AutoTokenizer.from_pretrained(template_dir).chat_template
    ids = {f"{name}_token_id": tokenizer.convert_tokens_to_ids(tok) for name, tok in
           (("bos", "<|im_start|>"), ("eos", "<|im_end|>"), ("pad", "<|endoftext|>"))}  # fmt: skip
    config = AutoConfig.for_model(model_type, vocab_size=len(tokenizer), **ids, **TINY_SHAPE, **DECODER_DEFAULTS)
    if model_type == "qwen2":
        config.use_sliding_window, config.sliding_window = False, None
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    save_built(target, model, tokenizer)


# ---- a real PostgreSQL server, for the sweeps that machines share -------------------------------
def postgres_bin(name: str) -> str | None:
    """Debian keeps the server's programs (initdb, pg_ctl) out of PATH, under its versioned folder."""
    import glob
    import shutil

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(p.split("/")[4]))
    return found[-1] if found else shutil.which(name)


class PostgresServer:
    """initdb into a fresh folder and a server on 127.0.0.1 at a free port, as a non-root user.

    The server refuses to run as root, so under root it runs as Debian's `postgres` system user. fsync is
    off: the data dies with the test.
    """

    def __init__(self, user: str | None):
        import tempfile

        self.user = user
        self.data = Path(tempfile.mkdtemp(prefix="tuneforge-pg-"))
        self.port = free_port()
        if user:
            import shutil

            shutil.chown(self.data, user)
        self.url = f"postgresql://tuneforge@127.0.0.1:{self.port}/postgres"

    def _run(self, *args: str, timeout: float = 60) -> None:
        subprocess.run(args, check=True, capture_output=True, timeout=timeout, user=self.user, cwd=self.data)

    def start(self) -> None:
        pgdata = str(self.data / "db")
        self._run(postgres_bin("initdb"), "-D", pgdata, "-U", "tuneforge", "-A", "trust", "-E", "UTF8", "--no-sync")
        options = f"-h 127.0.0.1 -p {self.port} -k {self.data} -F -c max_connections=100"
        self._run(postgres_bin("pg_ctl"), "-D", pgdata, "-o", options, "-l", str(self.data / "log"), "-w", "start")

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(host="127.0.0.1", port=self.port, user="tuneforge", dbname="postgres") as connection:
            connection.autocommit = True
            connection.execute(f'CREATE DATABASE "{name}"')
        return f"postgresql://tuneforge@127.0.0.1:{self.port}/{name}"

    def processes(self) -> list[int]:
        """The server's processes: every one has its data folder on its command line, or is its child."""
        found = []
        for process in psutil.process_iter(["cmdline"]):
            if str(self.data) in " ".join(process.info["cmdline"] or []) and is_live(process.pid):
                found += [process.pid, *live_descendants(process.pid)]
        return found

    def stop(self) -> None:
        pgdata = str(self.data / "db")
        try:
            self._run(postgres_bin("pg_ctl"), "-D", pgdata, "-m", "fast", "-w", "stop")
        except subprocess.CalledProcessError:
            for pid in self.processes():
                os.kill(pid, 9)


# For llama.cpp: every matrix row a whole number of its k-quant blocks (256 weights, QK_K), so q4_k_m really
# packs them as k-quants instead of falling back to another type; and a head size of 64 (4 heads fill 256).
GGUF_SHAPE = {"num_hidden_layers": 2, "hidden_size": 256, "intermediate_size": 512, "num_attention_heads": 4,
              "head_dim": 64}  # fmt: skip
GGUF_ARCHITECTURES = ("llama", "mistral", "qwen2", "qwen3", "gemma2", "gemma3_text", "phi3", "gpt2")
# llama.cpp's converter reads a Gemma 2 vocabulary from tokenizer.model alone. A Qwen2 folder's byte-level BPE
# is loaded by transformers as Qwen2Tokenizer, whose split of SmolLM2's vocabulary no real model has, so the
# converter (which knows each real model's split by a hash) would refuse it; with a tokenizer.model it reads that.
SENTENCEPIECE_ONLY = ("gemma2", "qwen2")


def build_gguf_tiny_model(target: Path, model_type: str, tokenizer_dir: Path) -> None:
    """A seeded random 2-layer model of model_type shaped for llama.cpp's k-quants (GGUF_SHAPE), with the
    sliding windows of TINY_ARCHITECTURES, beside SmolLM2's tokenizer; or, for an architecture whose vocabulary
    llama.cpp reads only from SentencePiece, a 600-piece SentencePiece tokenizer trained on the general text.
    Weights drawn wider than the usual init, so greedy choices are clear rather than near-ties."""
    import shutil
    import tempfile

    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    real = AutoConfig.from_pretrained(tokenizer_dir)
    ids = {name: getattr(real, name, None) for name in ("bos_token_id", "eos_token_id", "pad_token_id")}
    vocab = real.vocab_size
    if model_type in SENTENCEPIECE_ONLY:
        ids, vocab = {"pad_token_id": 0, "eos_token_id": 1, "bos_token_id": 2}, 600
    architecture = dict(TINY_ARCHITECTURES[model_type])
    if model_type == "gpt2":
        shape = {"n_layer": 2, "n_embd": 256, "n_head": 4, "n_positions": 2048}  # llama.cpp's n_inner: 4 n_embd
        architecture, defaults = {}, {}
    else:
        shape, defaults = GGUF_SHAPE, DECODER_DEFAULTS
        architecture.pop("head_dim", None)
    config = AutoConfig.for_model(
        model_type, vocab_size=vocab, initializer_range=0.2, **ids, **shape, **defaults, **architecture
    )
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    model.save_pretrained(staging)
    if model_type in SENTENCEPIECE_ONLY:
        import sentencepiece as spm

        spm.SentencePieceTrainer.train(
            input=str(ROOT / "assets" / "general_text.txt"), model_prefix=str(staging / "tokenizer"),
            vocab_size=vocab, model_type="bpe", byte_fallback=False, pad_id=0, eos_id=1, bos_id=2, unk_id=3,
            minloglevel=2,
        )  # fmt: skip
        (staging / "tokenizer.vocab").unlink()
        (staging / "tokenizer_config.json").write_text(
            json.dumps({"tokenizer_class": "GemmaTokenizer", "bos_token": "<s>", "eos_token": "</s>"})
        )
    else:
        AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(staging)
    try:
        os.rename(staging, target)
    except OSError:
        shutil.rmtree(staging, ignore_errors=True)  # another worker built it first


# The tokens a tiny byte-level tokenizer needs to speak SmolLM2's chat template (tests of GGUF files built here).
SPECIAL = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]


def byte_level_alphabet() -> list[str]:
    """GPT-2's printable stand-ins for the 256 bytes: a byte-level BPE vocabulary with no merges spells anything."""
    from transformers.convert_slow_tokenizer import bytes_to_unicode

    return list(bytes_to_unicode().values())
