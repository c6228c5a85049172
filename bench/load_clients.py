"""Benchmark: five clients poll a training job's status and one chats, all at once, for 60 s.

Launches the app as `make run` does, on loopback, starts a long job through the API, then runs
tests/test_load.py's clients (each status client asks five times a second, at most 400 requests;
the chat client asks the base model again as soon as each reply arrives). Runs twice: the status
clients alone, then with the chat. Prints JSON with the status latencies (p50, p95, max), the
chat replies, the job's steps meanwhile, and the failures (none expected).
Usage: python bench/load_clients.py [seconds]; BENCH_APP_ENV='{"OMP_NUM_THREADS": "1"}' adds
environment variables to the app's process (here: torch's threads for in-process chat).
"""

from __future__ import annotations

import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from gradio_client import Client  # noqa: E402

from tests.helpers import start_app, stop_app  # noqa: E402
from tests.load_driver import drive_clients  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-")) / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace, env=json.loads(os.environ.get("BENCH_APP_ENV", "{}")))
    try:
        client = Client(url, verbose=False)
        run_id = client.predict({"max_steps": 100_000, "save_steps": 0}, api_name="/train_start")
        while client.predict(run_id, api_name="/train_status")["step"] < 1:
            time.sleep(0.5)
        results = {}
        for phase, chatting in (("status_only", False), ("status_and_chat", True)):
            before = client.predict(run_id, api_name="/train_status")
            result = drive_clients(url, run_id, seconds, chatting=chatting)
            after = client.predict(run_id, api_name="/train_status")
            result["job_steps_meanwhile"] = after["step"] - before["step"]
            result["failures"] = result["failures"][:5]
            results[phase] = result
        client.predict(run_id, api_name="/train_abort")
    finally:
        stop_app(proc)
    results["machine"] = f"{platform.machine()}, {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}"
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
