"""Benchmark: the app's start with gradio's stub rewriting skipped (webui.gradio_import), against gradio as it is.

Each trial starts `python launch.py` fresh on an empty workspace, as `make run` does (no warm job server), and
stops it once its page answers. The "rewritten" trials put a sitecustomize first on the app's PYTHONPATH that
turns skip_stub_rewrite() into nothing; the "skipped" trials run the product as it is. Trials alternate, so a
busy machine slows both alike. Each reports the seconds until the page answered and the app's CPU seconds
(wait4, start to stop).

Usage: python bench/app_start.py [--trials N]   (last line: JSON)
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.trials import best, interleaved, machine, prepare, site_folder, without  # noqa: E402
from tests.helpers import start_app  # noqa: E402

MODES = ("skipped", "rewritten")
REWRITTEN = without("webui.gradio_import", "skip_stub_rewrite")


def trial(mode: str, workdir: Path, number: int) -> dict:
    name = f"app-{mode}-{number}"
    site = site_folder(workdir, name, REWRITTEN if mode == "rewritten" else "")
    (workdir / name).mkdir()
    env = {**os.environ, "PYTHONPATH": str(site), "TUNEFORGE_WARM_JOBS": "0"}
    began = time.time()
    process, _ = start_app(workdir / name, env=env)  # returns once its page answers
    answered = time.time() - began
    process.send_signal(signal.SIGTERM)
    _, _, usage = os.wait4(process.pid, 0)
    return {"answered_s": round(answered, 2), "cpu_s": round(usage.ru_utime + usage.ru_stime, 2)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--trials", type=int, default=3)
    args = parser.parse_args()
    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")
    workdir = prepare("tuneforge-app-start-")
    results = interleaved(["app"], MODES, args.trials, lambda kind, mode, number: trial(mode, workdir, number))
    least = {key: best(results, key)["app"] for key in ("cpu_s", "answered_s")}
    saved = round(least["cpu_s"]["rewritten"] - least["cpu_s"]["skipped"], 2)
    print(json.dumps({"machine": machine(), "trials": results["app"], "best": least, "cpu_saved_s": saved}))


if __name__ == "__main__":
    main()
