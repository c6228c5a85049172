"""Benchmark: five clients poll a training job's status and one chats, all at once, for 60 s.

Launches the app as `make run` does, on loopback, starts a long job through the API, then runs
tests/test_load.py's clients (each status client asks five times a second, at most 400 requests;
the chat client asks the base model again as soon as each reply arrives). Prints JSON with the
status latencies (p50, p95, max), the chat replies, the job's training speed meanwhile, and the
failures (none expected). Usage: python bench/load_clients.py [seconds]
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

from tests.conftest import start_app, stop_app  # noqa: E402
from tests.test_load import drive_clients  # noqa: E402

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def main() -> None:
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 60.0
    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-")) / "workspace"
    workspace.mkdir()
    proc, url = start_app(workspace)
    try:
        client = Client(url, verbose=False)
        run_id = client.predict({"max_steps": 100_000, "save_steps": 0}, api_name="/train_start")
        while client.predict(run_id, api_name="/train_status")["step"] < 1:
            time.sleep(0.5)
        before = client.predict(run_id, api_name="/train_status")
        result = drive_clients(url, run_id, seconds)
        after = client.predict(run_id, api_name="/train_status")
        client.predict(run_id, api_name="/train_abort")
    finally:
        stop_app(proc)
    result["job_steps_meanwhile"] = after["step"] - before["step"]
    result["job_tokens_per_s"] = after["tokens_per_s"]
    result["failures"] = result["failures"][:5]
    result["machine"] = f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
