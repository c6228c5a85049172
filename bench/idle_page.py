"""Benchmark: what an open, idle page costs its browser and the app, after a person has opened every tab.

Gradio keeps a drawn tab's timer ticking after the tab closes, and every tick costs the whole page its status
bookkeeping; webui/open_tab_timers.py parks the closed tabs' timers. This launches the app as `make run` does,
opens every tab in headless Chromium, comes back to one, then reads the CPU seconds of the app and of the
browser's processes over a quiet window. Prints JSON.
Usage: python bench/idle_page.py [--seconds 40] [--rest-on Train]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import app_in_chromium  # noqa: E402

TABS = ("Dataset", "Recipes", "Model", "Train", "Evaluate", "Chat", "Runs", "Sweeps", "Export")


def tree_cpu(pids: list[int]) -> float:
    """CPU seconds of these processes and all their children."""
    total = 0.0
    for pid in pids:
        try:
            root = psutil.Process(pid)
            processes = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            continue
        for process in processes:
            try:
                times = process.cpu_times()
                total += times.user + times.system
            except psutil.NoSuchProcess:
                pass
    return total


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=40.0)
    parser.add_argument("--rest-on", default="Train", choices=TABS)
    args = parser.parse_args()
    with app_in_chromium("tuneforge-bench-") as (proc, url, browser):
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(url)
        for name in (*TABS, args.rest_on):
            page.get_by_role("tab", name=name).click()
            time.sleep(2)
        time.sleep(10)  # the last tab's first draws settle
        others = [c.pid for c in psutil.Process().children() if c.pid != proc.pid]  # Playwright's driver, Chromium
        app_before, browser_before = tree_cpu([proc.pid]), tree_cpu(others)
        time.sleep(args.seconds)
        app_cpu, browser_cpu = tree_cpu([proc.pid]) - app_before, tree_cpu(others) - browser_before
    print(
        json.dumps(
            {
                "benchmark": "idle_page",
                "machine": platform.processor() or platform.machine(),
                "cpus": psutil.cpu_count(),
                "tabs_opened": len(TABS),
                "rests_on": args.rest_on,
                "seconds": args.seconds,
                "app_cpu_s": round(app_cpu, 2),
                "browser_cpu_s": round(browser_cpu, 2),
                "cores_busy": round((app_cpu + browser_cpu) / args.seconds, 3),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
