"""Benchmarks (lm-evaluation-harness) and a judge model, from a terminal.

    python -m backend.evaluate --config bench.yaml [--workspace WS]

bench.yaml holds one of (the same keys as the benchmark_start and judge_start API calls):
    benchmark: {tasks: [path, ...], models: [base, RUN_ID, ...], num_fewshot: 0, limit: 100}
    judge: {models: [A, B], dataset: path, limit: 20, judge: {base_url: URL, model: NAME}}
A judge's API key comes from $TUNEFORGE_JUDGE_API_KEY (or judge.api_key), and is written nowhere.
The job runs as the app runs it (a folder in WS/evaluations/), with progress on stderr; the table
goes to stdout as JSON. Ctrl-C aborts it; `--resume ID` goes on with an aborted one. A job waits
(queued) while a training run of the same workspace runs, as it does in the app.
Exit codes: 0 done, 1 the job failed, 2 a refusal (bad config, task, model or endpoint).

`python -m backend.evaluate --job FOLDER` is the job itself, as the app starts it.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path

from backend.cycle_collector import hold, settle
from backend.errors import TuneForgeError
from backend.evaluation.judge_run import API_KEY_ENV


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend.evaluate", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", help="a YAML with a benchmark: or judge: section")
    parser.add_argument("--workspace", default=os.environ.get("TUNEFORGE_WORKSPACE", "workspace"))
    parser.add_argument("--resume", metavar="ID", help="go on with an aborted or interrupted job")
    parser.add_argument("--job", metavar="FOLDER", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.job:
        return run_job(Path(args.job))
    settle()  # the terminal's process starts a job and follows it: it imports nothing to keep
    try:
        return follow(*start(args))
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


def start(args: argparse.Namespace):
    from backend.evaluation.eval_jobs import EvalJobs
    from backend.runs.job_manager import JobManager

    jobs = EvalJobs(JobManager(args.workspace))
    if args.resume:
        return jobs, jobs.resume(args.resume, os.environ.get(API_KEY_ENV, ""))
    if not args.config:
        raise TuneForgeError("give --config FILE (or --resume ID)")
    request = read_request(Path(args.config))
    if "benchmark" in request:
        return jobs, jobs.benchmark_start(request["benchmark"])
    judge = dict(request["judge"])
    endpoint = dict(judge.get("judge") or {})
    endpoint.setdefault("api_key", os.environ.get(API_KEY_ENV, ""))
    return jobs, jobs.judge_start({**judge, "judge": endpoint})


def read_request(path: Path) -> dict:
    import yaml

    try:
        request = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise TuneForgeError(f"{path}: {exc}".splitlines()[0]) from None
    if not isinstance(request, dict) or len(request) != 1 or next(iter(request)) not in ("benchmark", "judge"):
        raise TuneForgeError(f"{path}: expected one section, benchmark: or judge:")
    if not isinstance(next(iter(request.values())), dict):
        raise TuneForgeError(f"{path}: its section must be a mapping of keys")
    return request


def follow(jobs, job_id: str) -> int:
    """Wait for the job, printing its progress; Ctrl-C aborts it."""
    import time

    print(f"{job_id}: started (folder {jobs.folder(job_id)})", file=sys.stderr, flush=True)
    shown = None
    try:
        while (status := jobs.status(job_id))["status"] in ("queued", "running"):
            line = progress_line(status.get("progress"))
            if status["status"] == "queued":
                line = f"{job_id}: queued until the training run (or job) ahead of it ends"
            if line and line != shown:
                print(line, file=sys.stderr, flush=True)
                shown = line
            time.sleep(0.5)
    except KeyboardInterrupt:
        jobs.abort(job_id)
        print(f"{job_id}: aborted; `--resume {job_id}` goes on", file=sys.stderr)
        return 1
    print(json.dumps({k: v for k, v in status.items() if k != "progress"}, ensure_ascii=False, indent=1))
    if status["status"] != "completed":
        print(f"error: {status['error']}", file=sys.stderr)
        return 1
    return 0


def progress_line(progress: dict | None) -> str:
    if not progress:
        return ""
    done, total = progress.get("done"), progress.get("total")
    return f"{progress.get('model')}: {done}/{total or '?'}"


def run_job(folder: Path) -> int:
    """The job itself: its spec, its events, its result file."""
    from backend.capability import hide_bitsandbytes, may_be_saved_quantized
    from backend.evaluation.eval_jobs import RESULT_FILE, SPEC_FILE
    from backend.events import EventLog
    from backend.files import write_text_atomically

    events = EventLog(folder)
    spec = json.loads((folder / SPEC_FILE).read_text(encoding="utf-8"))
    # Each model loads as eval_jobs.model_spec resolved it, unquantized: only a folder saved quantized needs it.
    if not any(may_be_saved_quantized(m["pretrained"]) for m in spec.get("models", []) if m.get("pretrained")):
        hide_bitsandbytes()
    events.emit("start", pid=os.getpid(), kind=spec["kind"])
    try:
        if spec["kind"] == "benchmark":
            from backend.evaluation.bench_run import keep_with_runs, run_benchmark

            rows = run_benchmark(spec, folder, events)
            keep_with_runs(spec, folder.name, rows)
            result = {"results": rows}
        else:
            from backend.evaluation.judge_run import run_judge

            settle()  # a judge job asks endpoints, and loads its models (if any) among its requests
            result = {"rows": run_judge(spec, folder, events)}
        write_text_atomically(folder / RESULT_FILE, json.dumps(result, ensure_ascii=False, indent=1))
    except TuneForgeError as exc:
        events.emit("end", status="failed", error=str(exc))
        print(f"error: {exc}", flush=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the job reports every failure as its end, in one line
        traceback.print_exc()
        events.emit("end", status="failed", error=f"{type(exc).__name__}: {exc}".splitlines()[0][:300])
        return 1
    events.emit("end", status="completed")
    return 0


if __name__ == "__main__":
    hold()  # until a benchmark job has imported lm-eval and its libraries (backend.cycle_collector)
    sys.exit(main())
