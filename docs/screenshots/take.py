"""Screenshots of every tab in every language: `.venv/bin/python docs/screenshots/take.py`.

Starts the app on a fresh workspace (as `make run` would, on a free port), opens it in Debian's chromium
once per language, and writes `<language>-<tab>.png` beside this file.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from tests.helpers import app_in_chromium  # noqa: E402

TABS = ("dataset", "model", "train", "evaluate", "chat", "runs", "sweeps", "export")
LANGUAGES = ("en-US", "zh-CN")


def main() -> None:
    out = Path(__file__).parent
    with app_in_chromium("tuneforge-shots-") as (_, url, browser):
        for language in LANGUAGES:
            page = browser.new_page(locale=language, viewport={"width": 1280, "height": 900})
            page.goto(url)
            page.wait_for_selector("#app-heading", timeout=60_000)
            for i, tab in enumerate(TABS):
                page.get_by_role("tab").nth(i).click()
                page.wait_for_timeout(2_500)  # the tab's lists and checks answer
                page.screenshot(path=str(out / f"{language.split('-')[0]}-{tab}.png"))
            page.close()


if __name__ == "__main__":
    main()
