"""Serve a completed run over an OpenAI-compatible API.

    python -m backend.serve --workspace WS --run RUN_ID [--host 127.0.0.1] [--port 8000] [--api-key KEY]
                            [--max-tokens 1024] [--max-request-bytes 1048576] [--max-queue 8]

The run is merged first (its export/merged/ folder, reused when it is newer than the run), then
served at http://HOST:PORT/v1 under its run id: `/v1/models`, `/v1/chat/completions` (streaming,
temperature, top_p, max_tokens, stop). It binds 127.0.0.1 unless told otherwise. Exit codes: 2 for a
refusal (no such run, not completed, the port taken), 0 when stopped with Ctrl-C or SIGTERM, which
end a generation in progress at its next token (backend.serving.openai_server: the limits).
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from pathlib import Path

from backend.errors import TuneForgeError
from backend.serving.server_limits import STOPPING, ServerLimits


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend.serve", description=__doc__.split("\n\n")[0])
    parser.add_argument("--workspace", default=os.environ.get("TUNEFORGE_WORKSPACE", "workspace"))
    parser.add_argument("--run", required=True, metavar="RUN_ID", help="a completed run of the workspace")
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
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    try:
        folder = merged_model(Path(args.workspace), args.run)
        _check_port(args.host, args.port)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    import uvicorn

    from backend.serving.openai_server import build_app

    limits = ServerLimits(args.max_tokens, args.max_request_bytes, args.max_queue)
    app = build_app(args.run, folder, args.api_key, limits)
    key_note = " (API key required)" if args.api_key else ""
    print(f"serving run {args.run} at http://{args.host}:{args.port}/v1{key_note}", flush=True)
    if args.host not in ("127.0.0.1", "localhost", "::1") and not args.api_key:
        print(f"warning: listening on {args.host} without --api-key; anyone who reaches it can use the model")
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level="warning", timeout_graceful_shutdown=2)
    _server_class()(config).run()
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
    from backend.runfiles import EVENTS_FILE
    from backend.runs.manager import JobManager
    from backend.serving.export import Exporter

    jobs = JobManager(workspace)
    run_dir = jobs.run_dir(run_id)
    status = jobs.status(run_id)["status"]
    if status != "completed":
        raise TuneForgeError(f"run '{run_id}' is {status}; only a completed run can be served")
    merged = run_dir / "export" / "merged"
    if (merged / "config.json").exists() and merged.stat().st_mtime >= (run_dir / EVENTS_FILE).stat().st_mtime:
        return merged
    print(f"merging run {run_id} for serving...", flush=True)
    return Exporter(jobs).export(run_id, "merged")


def _check_port(host: str, port: int) -> None:
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as s:
        try:
            s.bind((host, port))
        except OSError as exc:
            raise TuneForgeError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None


if __name__ == "__main__":
    sys.exit(main())
