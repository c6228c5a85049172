"""llama.cpp as the studio runs it: its converters, llama-quantize, llama-perplexity and llama-server.

The tools are built once by `make llamacpp` (backend.serving.llamacpp_build) into a cache outside
the checkout. The converters run in a subprocess with this venv's Python and llama.cpp's own gguf-py
first on the path (the installed `gguf` package, which reads GGUF files elsewhere, stays as it is).
llama-server runs on loopback on a free port, as a subprocess in its own process group.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from backend.errors import TuneForgeError, signal_name
from backend.serving import llamacpp_build

# A converter's failure is its last line; these name what it refused, where it says so.
_UNSUPPORTED = re.compile(r"Model (\S+) is not supported")
READY_S = 120.0


def bin_path(tool: str) -> Path:
    path = llamacpp_build.bin_dir() / tool
    if not path.exists():
        raise TuneForgeError(f"the llama.cpp runtime is not installed here: run `make llamacpp` once (no {tool})")
    return path


def source_dir() -> Path:
    src = llamacpp_build.source_dir()
    if not (src / ".complete").exists():
        raise TuneForgeError("the llama.cpp runtime is not installed here: run `make llamacpp` once")
    return src


def available() -> bool:
    return llamacpp_build.is_built()


def _converter_env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(source_dir() / "gguf-py"), str(source_dir())])
    env.setdefault("HF_HUB_OFFLINE", "1")
    return env


def _last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "no output"


def convert_model(model_dir: Path, out: Path, outtype: str, metadata: Path | None = None, mmproj: bool = False) -> Path:
    """llama.cpp's convert_hf_to_gguf.py on a transformers model folder; outtype f16, bf16, q8_0 or f32;
    metadata: a JSON file of general.* keys (name, description, ...) for the file; mmproj: a vision-language
    model's image encoder and projector (llama.cpp's multimodal projector file) instead of its language model."""
    command = [sys.executable, str(source_dir() / "convert_hf_to_gguf.py"), str(model_dir),
               "--outfile", str(out), "--outtype", outtype]  # fmt: skip
    if metadata:
        command += ["--metadata", str(metadata)]
    if mmproj:
        command.append("--mmproj")
    return _converted(command, out, "the {} architecture", "llama.cpp's converter")


def convert_adapter(adapter_dir: Path, base_dir: Path, out: Path, outtype: str = "f16") -> Path:
    """llama.cpp's convert_lora_to_gguf.py: a PEFT LoRA adapter as a GGUF LoRA for base_dir's model."""
    command = [sys.executable, str(source_dir() / "convert_lora_to_gguf.py"), str(adapter_dir),
               "--base", str(base_dir), "--outfile", str(out), "--outtype", outtype]  # fmt: skip
    return _converted(command, out, "a LoRA of the {} architecture", "llama.cpp's LoRA converter")


def _converted(command: list[str], out: Path, what: str, converter: str) -> Path:
    """Run one of llama.cpp's converters; an architecture it does not know, or any failure, is one line."""
    done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=_converter_env())
    if done.returncode != 0:
        log = done.stdout + done.stderr
        if match := _UNSUPPORTED.search(log):
            raise TuneForgeError(f"llama.cpp cannot convert {what.format(match.group(1))} to GGUF")
        raise TuneForgeError(f"{converter} failed: {_last_line(log)}")
    return out


def cpu_threads() -> int | None:
    """Threads for llama.cpp's tools: OMP_NUM_THREADS where it caps this process's threads, else None (llama.cpp's
    own default, a thread a physical core).

    The test workers set it to 1, side by side on two cores: a thread a core beside another busy process waits at
    llama.cpp's barriers for a core it does not get. One llama-perplexity beside one busy loop (2-core Zen 3) took
    12.1 CPU-s with two threads and 7.6 with one, and longer on the clock."""
    value = os.environ.get("OMP_NUM_THREADS", "")
    return int(value) if value.isdigit() and int(value) > 0 else None


def _threads(flag: str | None, threads: int | None) -> list[str]:
    threads = threads or cpu_threads()
    if not threads:
        return []
    return [flag, str(threads)] if flag else [str(threads)]


def quantize(source: Path, out: Path, gguf_type: str, threads: int | None = None) -> Path:
    """llama-quantize from an f16 GGUF to gguf_type (q4_k_m, q5_k_m, q6_k, q8_0)."""
    command = [str(bin_path("llama-quantize")), str(source), str(out), gguf_type.upper(), *_threads(None, threads)]
    done = subprocess.run(command, capture_output=True, text=True, errors="replace")
    if done.returncode != 0:
        raise TuneForgeError(f"llama-quantize failed: {_last_line(done.stdout + done.stderr)}")
    return out


PERPLEXITY_TRIES = 3


def perplexity(gguf_file: Path, text_file: Path, ctx: int, chunks: int, threads: int | None = None) -> float:
    """llama.cpp's perplexity of the file on the text: `chunks` windows of `ctx` tokens."""
    command = [str(bin_path("llama-perplexity")), "-m", str(gguf_file), "-f", str(text_file), "-c", str(ctx),
               "--chunks", str(chunks), *_threads("-t", threads), "-b", str(ctx)]  # fmt: skip
    for _ in range(PERPLEXITY_TRIES):
        done = subprocess.run(command, capture_output=True, text=True, errors="replace")
        log = done.stdout + done.stderr
        match = re.search(r"Final estimate: PPL = ([0-9.]+|nan|inf)", log)
        # llama.cpp logs through a thread that it never joins at exit (its common/log.cpp leaks the logger on
        # purpose, llama.cpp issue 22142): under load a run that exited 0 lost every line after its first pass,
        # the result among them (three times in two clean suites). Such a run, or one killed by a signal, is
        # tried again; a file the tool refuses (an exit code of its own) fails at once.
        if match or done.returncode > 0:
            break
    if done.returncode != 0 or not match:
        how = _exit(done.returncode)
        raise TuneForgeError(f"llama-perplexity failed on {gguf_file.name} ({how}): {_last_line(log)}")
    return float(match.group(1))


def _exit(code: int) -> str:
    return f"killed by {signal_name(code)}" if code < 0 else f"exit code {code}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama-server for one GGUF file (with LoRA adapters, if given), on 127.0.0.1 unless told otherwise.

    Used as a context manager by the export's check and the chat, and run in the foreground by
    `python -m backend.serve --engine llamacpp`."""

    def __init__(
        self,
        gguf_file: Path,
        alias: str | None = None,
        lora: list[Path] | None = None,
        ctx: int = 4096,
        threads: int | None = None,
        host: str = "127.0.0.1",
        port: int | None = None,
        api_key: str | None = None,
        log_file: Path | None = None,
        max_tokens: int | None = None,
        mmproj: Path | None = None,
    ):
        self.gguf_file, self.host, self.port = Path(gguf_file), host, port or free_port()
        self.alias = alias or self.gguf_file.stem
        self.api_key, self.log_file = api_key, log_file
        self.command = [str(bin_path("llama-server")), "-m", str(self.gguf_file), "--host", host,
                        "--port", str(self.port), "-a", self.alias, "-c", str(ctx), "--jinja", "--no-webui",
                        "-np", "1"]  # fmt: skip
        for adapter in lora or []:
            self.command += ["--lora", str(adapter)]
        if mmproj:  # a vision-language model's image encoder: the server then takes images in chats
            self.command += ["--mmproj", str(mmproj)]
        self.command += _threads("-t", threads)
        if max_tokens:
            self.command += ["-n", str(max_tokens)]  # llama-server's cap on any one reply, whatever it asks
        self.proc: subprocess.Popen | None = None
        self._own_log = self._own_group = False

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, quiet: bool = True) -> LlamaServer:
        """Start it and wait until the model is loaded. quiet: its log goes to a file (the reason of a failure
        comes from there), else to this process's output."""
        if quiet and self.log_file is None:
            self.log_file = Path(tempfile.gettempdir()) / f"tuneforge-llama-server-{self.port}.log"
            self._own_log = True
        # In the background its own process group, so stopping it takes any child too; in the foreground (serve)
        # the caller's, so a Ctrl-C or a stop of the caller's group reaches it as well.
        self._own_group = quiet
        with open(self.log_file, "wb") if quiet else contextlib.nullcontext(None) as out:
            # The key goes by the environment (llama-server's LLAMA_API_KEY), so no process list shows it.
            env = {**os.environ, "LLAMA_API_KEY": self.api_key} if self.api_key else None
            self.proc = subprocess.Popen(
                self.command, stdout=out, stderr=subprocess.STDOUT, start_new_session=quiet, env=env
            )
        deadline = time.monotonic() + READY_S
        while True:
            if self.proc.poll() is not None:
                tail = self.log_file.read_text(errors="replace") if self.log_file else ""
                self._drop_log()
                raise TuneForgeError(f"llama-server could not load {self.gguf_file.name}: {_last_line(tail)}")
            try:
                if self.get("/health").get("status") == "ok":
                    return self
            except (OSError, ValueError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise TuneForgeError(f"llama-server did not load {self.gguf_file.name} in {READY_S:.0f} s")
            time.sleep(0.1)

    def _drop_log(self) -> None:
        if self._own_log and self.log_file is not None:
            self.log_file.unlink(missing_ok=True)

    def stop(self) -> None:
        self._drop_log()
        if self.proc is None or self.proc.poll() is not None:
            return
        send = (lambda sig: os.killpg(self.proc.pid, sig)) if self._own_group else self.proc.send_signal
        try:
            send(signal.SIGTERM)
            self.proc.wait(timeout=10)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            try:
                send(signal.SIGKILL)
                self.proc.wait(timeout=10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                pass

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def __enter__(self) -> LlamaServer:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def _request(self, path: str, body: dict | None = None, timeout: float = 300.0):
        data = json.dumps(body).encode() if body is not None else None
        request = urllib.request.Request(self.url + path, data=data, method="POST" if data else "GET")
        request.add_header("Content-Type", "application/json")
        if self.api_key:
            request.add_header("Authorization", f"Bearer {self.api_key}")
        return urllib.request.urlopen(request, timeout=timeout)  # noqa: S310 - our own loopback server

    def get(self, path: str) -> dict[str, Any]:
        with self._request(path, timeout=5) as response:
            return json.loads(response.read())

    def post(self, path: str, body: dict) -> dict[str, Any]:
        try:
            with self._request(path, body) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as exc:
            detail = exc.read().decode(errors="replace")[:300]
            raise TuneForgeError(f"llama-server answered {exc.code} on {path}: {detail}") from None

    def stream(self, path: str, body: dict):
        """The server-sent events of a streamed request, as dicts."""
        with self._request(path, {**body, "stream": True}) as response:
            for raw in response:
                line = raw.decode("utf-8", errors="replace").strip()
                if line.startswith("data: ") and line != "data: [DONE]":
                    yield json.loads(line[len("data: ") :])

    def tokenize(self, text: str) -> list[int]:
        return self.post("/tokenize", {"content": text, "add_special": False, "parse_special": True})["tokens"]

    def greedy(self, prompt_ids: list[int], n: int) -> list[int]:
        """The greedy continuation of the token ids, n tokens (fewer where the model ends its turn)."""
        body = {"prompt": prompt_ids, "n_predict": n, "temperature": 0.0, "top_k": 1, "samplers": ["top_k"],
                "return_tokens": True, "cache_prompt": False, "seed": 0}  # fmt: skip
        return self.post("/completion", body)["tokens"]
