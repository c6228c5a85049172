"""Benchmark: time from the Start click to the first loss-chart point, the app's memory, and the
app's CPU use while a job trains with the Train tab open (the 1 s chart polling).

Launches the app as `make run` does, drives real headless Chromium, and prints JSON.
Usage: python bench/ui_latency.py
"""

from __future__ import annotations

import json
import re
import sys
import tempfile
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import CHROMIUM_ARGS, pick, start_app, stop_app  # noqa: E402


def rss_mib(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


def cpu_seconds(pid: int) -> float:
    times = psutil.Process(pid).cpu_times()
    return times.user + times.system  # not its children


def main() -> None:
    from playwright.sync_api import sync_playwright

    workspace = Path(tempfile.mkdtemp(prefix="tuneforge-bench-")) / "workspace"
    workspace.mkdir()
    launched = time.perf_counter()
    proc, url = start_app(workspace)
    app_start_s = time.perf_counter() - launched
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            page = browser.new_page()
            page.goto(url)
            idle_rss = rss_mib(proc.pid)
            page.get_by_role("tab", name="Train").click()
            page.locator("#opt-max_steps input[type=number]").fill("30")
            clicked = time.perf_counter()
            page.locator("#start-btn").click()
            page.wait_for_function(
                "() => /([1-9][0-9]*) train points/.test(document.querySelector('#chart-caption').innerText)",
                timeout=300_000,
            )
            first_point_s = time.perf_counter() - clicked
            # The job trains in its own process; what the app spends meanwhile is the UI's polling.
            cpu_before, window_began = cpu_seconds(proc.pid), time.perf_counter()
            time.sleep(15)
            polling_cpu = (cpu_seconds(proc.pid) - cpu_before) / (time.perf_counter() - window_began)
            page.wait_for_selector("#run-progress[data-status=completed]", timeout=300_000)
            run_id = re.search(r"Started run (\S+)\.", page.locator("#train-message").inner_text()).group(1)
            page.get_by_role("tab", name="Chat").click()
            # The list follows completed runs by itself (no refresh button): wait until it offers this one.
            page.wait_for_function(
                "run => document.querySelector('#chat-target').innerText.includes(run) || "
                "[...document.querySelectorAll('#chat-target input')].some(e => e.value === run)",
                arg=run_id,
                timeout=60_000,
            )
            pick(page, "chat-target", run_id)
            page.locator("#chat-input textarea").fill("What is your name?")
            page.locator("#chat-send").click()
            page.wait_for_function(
                "() => [...document.querySelectorAll('#chatbot [data-testid=bot]')].some(e => e.innerText.trim())",
                timeout=300_000,
            )
            chat_rss = rss_mib(proc.pid)
            browser.close()
    finally:
        stop_app(proc)
    print(
        json.dumps(
            {
                "benchmark": "ui_latency",
                "app_start_s": round(app_start_s, 1),
                "start_click_to_first_chart_point_s": round(first_point_s, 1),
                "app_cpu_while_training_pct_of_one_core": round(100 * polling_cpu, 1),
                "app_rss_idle_mib": idle_rss,
                "app_rss_after_chat_mib": chat_rss,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
