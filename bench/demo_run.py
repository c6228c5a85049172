"""Benchmark: the default demo run (demo_identity, all defaults) through the CLI.

Prints JSON: wall time, training tokens/s from the end event, the job's peak RSS, losses, and the answer to
"What is your name?" from the base model and the fine-tuned run.
Usage: python bench/demo_run.py [--max-steps N]
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--max-steps", type=int, default=-1, help="-1: the full default run (3 epochs)")
    args = parser.parse_args()
    from backend.events import read_events
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine

    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-"))
    run_dir = workspace / "runs" / "demo"
    config = workspace / "run.yaml"
    config.write_text(f"output_dir: {run_dir}\nmax_steps: {args.max_steps}\n")
    began = time.perf_counter()
    # The job writes its own train.log; keep stdout for the JSON result alone.
    cmd = [sys.executable, "-m", "backend.train", "--config", str(config)]
    subprocess.run(cmd, cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    wall = time.perf_counter() - began
    peak_rss_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024  # the job, before chat loads here
    events = read_events(run_dir)
    end = events[-1]
    first_log = next(e for e in events if e["type"] == "log")
    chat = ChatEngine(JobManager(workspace))
    question = "What is your name?"
    result = {
        "benchmark": "demo_run",
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores, {platform.python_version()}",
        "wall_s": round(wall, 1),
        "start_to_first_log_s": round(first_log["time"] - events[0]["time"], 1),
        "train_runtime_s": end["train_runtime_s"],
        "steps": end["global_step"],
        "tokens_seen": end["tokens_seen"],
        "tokens_per_s": end["tokens_per_s"],
        "peak_rss_mb": round(peak_rss_mb),
        "first_loss": first_log["loss"],
        "train_loss": end["train_loss"],
        "eval_loss": end.get("eval_loss"),
        "base_answer": chat.reply("base", question, temperature=0, max_new_tokens=40),
        "tuned_answer": chat.reply("demo", question, temperature=0, max_new_tokens=40),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
