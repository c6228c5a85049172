"""Serve a completed run, or a GGUF file, over an OpenAI-compatible API.

    python -m backend.serve --workspace WS (--run RUN_ID | --gguf FILE) [--engine transformers|llamacpp]
                            [--gguf-type q8_0] [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                            [--max-tokens 1024] [--max-request-bytes 1048576] [--max-queue 8]

Two engines serve `/v1/models`, `/v1/chat/completions` and `/v1/completions` (streaming, temperature,
top_p, max_tokens, stop):
- transformers (the default for a run): the run is merged first (its export/merged/ folder, reused when
  it is newer than the run) and served by transformers' own server handlers, under its run id;
- llamacpp (the default for --gguf): llama.cpp's llama-server (4.7-7.4x the tokens/s on a CPU;
  docs/benchmarks.md). A run is exported as a GGUF of --gguf-type first (reused when it is newer than
  the run) and served under its run id; a --gguf FILE is served under its file name's stem.
It binds 127.0.0.1 unless told otherwise. Exit codes: 2 for a refusal (no such run, not completed, no
such file, the port taken, no llama.cpp runtime), 0 when stopped with Ctrl-C or SIGTERM, which end a
generation in progress at its next token. The transformers engine holds every request to the limits
(backend.serving.server_limits): max_tokens capped, over-long prompts and bodies refused, a bounded queue.
On llamacpp, --max-tokens caps every reply (llama-server's -n) and llama-server refuses a prompt past its
context itself; --max-request-bytes and --max-queue are the transformers engine's only.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import sys
from pathlib import Path

from backend.cycle_collector import hold, settle
from backend.errors import TuneForgeError
from backend.serving.server_limits import STOPPING, ServerLimits

ENGINES = ("transformers", "llamacpp")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=os.environ.get("TUNEFORGE_WORKSPACE", "workspace"))
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--run", metavar="RUN_ID", help="a completed run of the workspace")
    what.add_argument("--gguf", metavar="FILE", help="a .gguf model file")
    parser.add_argument("--engine", choices=ENGINES, help="transformers (default for --run) or llamacpp")
    parser.add_argument("--gguf-type", default="q8_0", help="the GGUF type a run is exported as for llamacpp")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8000, help="port (default: 8000)")
    parser.add_argument(
        "--api-key",
        default=os.environ.get("TUNEFORGE_API_KEY"),
        help="require 'Authorization: Bearer KEY' on every request (default: $TUNEFORGE_API_KEY, else none)",
    )
    limits = ServerLimits()
    parser.add_argument(
        "--max-tokens",
        type=int,
        default=limits.max_tokens,
        help=f"the most tokens one reply generates, whatever it asks (default: {limits.max_tokens})",
    )
    parser.add_argument(
        "--max-request-bytes",
        type=int,
        default=limits.max_request_bytes,
        help=f"a larger request body is refused with 413 (default: {limits.max_request_bytes})",
    )
    parser.add_argument(
        "--max-queue",
        type=int,
        default=limits.max_queue,
        help=f"requests that may wait while one generates; more get 429 (default: {limits.max_queue})",
    )
    args = parser.parse_args(argv)
    for name in ("max_tokens", "max_request_bytes", "max_queue"):
        if getattr(args, name) < (0 if name == "max_queue" else 1):
            parser.error(f"--{name.replace('_', '-')} must be at least {0 if name == 'max_queue' else 1}")
    args.engine = args.engine or ("llamacpp" if args.gguf else "transformers")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        if args.engine == "llamacpp":
            return _serve_llamacpp(args)
        name, folder = (args.run, merged_model(Path(args.workspace), args.run)) if args.run else _gguf_folder(args)
        _check_port(args.host, args.port)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    import uvicorn

    from backend.serving.openai_server import build_app

    limits = ServerLimits(args.max_tokens, args.max_request_bytes, args.max_queue)
    app = build_app(name, folder, args.api_key, limits)
    settle()  # the libraries and the model stay as long as the server: out of every later collection
    _say_serving(args, name)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    _server_class()(config).run()
    return 0


def _say_serving(args: argparse.Namespace, name: str) -> None:
    key_note = " (API key required)" if args.api_key else ""
    what = f"run {name}" if args.run else f"model {name}"
    print(f"serving {what} at http://{args.host}:{args.port}/v1 on {args.engine}{key_note}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: listening on {args.host} without --api-key; anyone who reaches it can use the model")


def _gguf_file(spec: str) -> Path:
    path = Path(spec).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        raise TuneForgeError(f"--gguf {spec}: no such .gguf file")
    return path.resolve()


def _gguf_folder(args: argparse.Namespace) -> tuple[str, Path]:
    """--gguf on transformers: the file converted once into the model cache (quantized weights dequantized)."""
    from backend.models.sources import gguf_model_dir

    path = _gguf_file(args.gguf)
    return path.stem, gguf_model_dir(path)


def _serve_llamacpp(args: argparse.Namespace) -> int:
    from backend.serving.llamacpp import LlamaServer

    if args.run:
        name, path = args.run, exported_gguf(Path(args.workspace), args.run, args.gguf_type)
    else:
        path = _gguf_file(args.gguf)
        name = path.stem
    _check_port(args.host, args.port)
    server = LlamaServer(
        path, alias=name, host=args.host, port=args.port, api_key=args.api_key, max_tokens=args.max_tokens
    )
    # A stop (SIGTERM, as the Export tab's Stop sends) ends llama-server too, as Ctrl-C does.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    server.start(quiet=False)
    settle()  # this process only waits on llama-server's
    _say_serving(args, name)
    try:
        server.proc.wait()
    except KeyboardInterrupt:
        pass
    finally:
        server.stop()
    return 0


def _server_class():
    import uvicorn

    class Server(uvicorn.Server):
        """uvicorn's server, whose stop (SIGTERM, Ctrl-C) also ends the generation in progress."""

        def handle_exit(self, sig, frame):
            STOPPING.set()
            super().handle_exit(sig, frame)

    return Server


def merged_model(workspace: Path, run_id: str) -> Path:
    """The run's merged model folder, exported now unless an export newer than the run is there."""
    return _export(workspace, run_id, "merged", "merged", "config.json")


def exported_gguf(workspace: Path, run_id: str, gguf_type: str) -> Path:
    """The run's GGUF of gguf_type, exported (and checked in llama.cpp) now unless one newer than the run is there."""
    folder = _export(workspace, run_id, "gguf", f"gguf-{gguf_type}", f"{run_id}-{gguf_type}.gguf", gguf_type)
    return folder / f"{run_id}-{gguf_type}.gguf"


def _export(workspace: Path, run_id: str, kind: str, folder_name: str, marker: str, gguf_type: str = "q8_0") -> Path:
    from backend.capability import hide_bitsandbytes, saved_run_uses_bitsandbytes
    from backend.runfiles import EVENTS_FILE
    from backend.runs.job_manager import JobManager
    from backend.serving.export import Exporter

    jobs = JobManager(workspace)
    run_dir = jobs.run_dir(run_id)
    status = jobs.status(run_id)["status"]
    if status != "completed":
        raise TuneForgeError(f"run '{run_id}' is {status}; only a completed run can be served")
    if not saved_run_uses_bitsandbytes(jobs.config(run_id)):
        hide_bitsandbytes()  # before the export or the server imports peft
    folder = run_dir / "export" / folder_name
    if (folder / marker).exists() and folder.stat().st_mtime >= (run_dir / EVENTS_FILE).stat().st_mtime:
        return folder
    print(f"exporting run {run_id} ({folder_name}) for serving...", flush=True)
    return Exporter(jobs).export(run_id, kind, gguf_type=gguf_type)


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise TuneForgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    hold()  # until the model is loaded (backend.cycle_collector)
    sys.exit(main())
