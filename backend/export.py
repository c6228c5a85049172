"""Export a finished run from a terminal: what the Export tab does, through the same Exporter.

    python -m backend.export --workspace WS --run RUN_ID --format merged|adapter|gguf|gguf_adapter
        [--gguf-type q4_k_m] [--max-shard-size 2GB] [--zip] [--push OWNER/NAME [--token T] [--public]]

The export lands in <run dir>/export/<format>/ (a GGUF in export/gguf-<type>/, with an Ollama
Modelfile), exactly where the app puts it, so the app offers it too. Prints a line per stage, then
the folder (or the zip, or the hub URL). The token may come from HF_TOKEN instead of the command line.

Exit codes: 0 exported, 2 refused (one line on stderr: an unknown run, a run not completed, a format
the run cannot take), 1 the export failed (one line on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys

from backend.errors import TuneForgeError
from backend.paths import default_workspace
from backend.serving.export import GGUF_KINDS, KINDS, gguf_verification
from backend.serving.gguf_export import GGUF_TYPES


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m backend.export", description=__doc__.split("\n\n")[0])
    where = "the app's workspace (default: $TUNEFORGE_WORKSPACE or the project's workspace/)"
    p.add_argument("--workspace", default=None, help=where)
    p.add_argument("--run", required=True, metavar="RUN_ID", help="a completed run of the workspace")
    p.add_argument("--format", choices=KINDS, default="merged", help="what to export (default: merged)")
    p.add_argument("--gguf-type", choices=GGUF_TYPES, default="q8_0", help="GGUF quantization (default: q8_0)")
    p.add_argument("--max-shard-size", default="2GB", help="merged weights per file, e.g. 500MB (default: 2GB)")
    p.add_argument("--zip", action="store_true", help="also write the export as one zip beside its folder")
    p.add_argument("--push", metavar="OWNER/NAME", help="upload the export to this Hugging Face Hub repo")
    p.add_argument("--token", default=None, help="Hugging Face write token for --push (default: $HF_TOKEN)")
    p.add_argument("--public", action="store_true", help="make the pushed repo public (default: private)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from backend.runs.job_manager import JobManager
    from backend.serving.export import Exporter

    try:
        jobs = JobManager(args.workspace or default_workspace())
        exporter = Exporter(jobs)
        jobs.status(args.run)  # an unknown run is refused here, before anything loads
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    say = lambda line: print(line, flush=True)  # noqa: E731
    try:
        try:
            result = _export(exporter, args, say)
        finally:
            jobs.shutdown()
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2
    except Exception as exc:  # noqa: BLE001 - a crash mid-export is one line; the staged folder is not left half-made
        print(f"error: export failed: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}",
              file=sys.stderr, flush=True)  # fmt: skip
        return 1
    print(result, flush=True)
    return 0


def _export(exporter, args, say) -> str:
    kind, shard, gguf_type = args.format, args.max_shard_size, args.gguf_type
    if args.push:
        token = args.token or os.environ.get("HF_TOKEN", "")
        return exporter.push(args.run, args.push, token, not args.public, kind, gguf_type)
    if args.zip:
        return str(exporter.zip(args.run, kind, shard, gguf_type, say))
    folder = exporter.export(args.run, kind, shard, gguf_type, say)
    note = exporter.note(args.run, kind)
    if note:
        say(note)
    check = gguf_verification(folder) if kind in GGUF_KINDS else {}
    if check:
        say("llama.cpp check: " + ", ".join(f"{k} {v}" for k, v in check.items() if not isinstance(v, (dict, list))))
    return str(folder)


if __name__ == "__main__":
    sys.exit(main())
