"""Benchmark: what a tick costs the page once an earlier event showed progress on many components.

Gradio's page updates the loading status of every component that was ever an event's progress target, on
every later status message (webui/progress_targets.py). This serves a page of 300 fields whose load event
fills them all, and a one-output timer; in headless Chromium it reads the page's script time over a quiet
window, once with Gradio's default targets (each event's outputs) and once with none. Prints JSON.
Usage: python bench/progress_cost.py [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import time
from pathlib import Path

import gradio as gr

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.helpers import CHROMIUM_ARGS, free_port  # noqa: E402

FIELDS = 150  # a textbox and a number each


def page(targets: list | None) -> gr.Blocks:
    extra = {} if targets is None else {"show_progress_on": targets}
    with gr.Blocks() as blocks:
        boxes = []
        with gr.Tabs():
            for tab in range(3):
                with gr.Tab(f"T{tab}"):
                    for i in range(FIELDS // 3):
                        with gr.Row():
                            boxes += [gr.Textbox(value=f"v{i}", label=f"box {tab}.{i}"), gr.Number(value=i)]
        shown = gr.Markdown(elem_id="ticks")
        ticks = iter(range(1, 10**9))
        gr.Timer(1.0).tick(lambda: f"tick {next(ticks)}", None, shown, queue=False, show_progress="hidden", **extra)
        blocks.load(lambda: [gr.update()] * len(boxes), None, boxes, queue=False, show_progress="hidden", **extra)
    return blocks


def script_seconds(cdp) -> float:
    return {m["name"]: m["value"] for m in cdp.send("Performance.getMetrics")["metrics"]}["ScriptDuration"]


def measure(targets: list | None, seconds: float) -> dict:
    from playwright.sync_api import sync_playwright

    blocks, port = page(targets), free_port()
    blocks.launch(server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
            tab = browser.new_page(viewport={"width": 1400, "height": 1000})
            cdp = tab.context.new_cdp_session(tab)
            cdp.send("Performance.enable")
            tab.goto(f"http://127.0.0.1:{port}/")
            tab.wait_for_selector("#ticks")
            for name in ("T1", "T2", "T0"):  # every field drawn, as a person who looked at each tab has them
                tab.get_by_role("tab", name=name).click()
                time.sleep(1)
            time.sleep(3)
            first, before = tab.inner_text("#ticks"), script_seconds(cdp)
            time.sleep(seconds)
            spent, last = script_seconds(cdp) - before, tab.inner_text("#ticks")
            browser.close()
    finally:
        blocks.close()
    ticks = int(last.split()[-1]) - int(first.split()[-1])
    return {"ticks": ticks, "script_s": round(spent, 2), "script_s_per_tick": round(spent / max(ticks, 1), 4)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15.0)
    args = parser.parse_args()
    result = {
        "benchmark": "progress_cost",
        "machine": platform.machine(),
        "fields": FIELDS * 2,
        "seconds": args.seconds,
        "default_targets": measure(None, args.seconds),
        "no_targets": measure([], args.seconds),
    }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
