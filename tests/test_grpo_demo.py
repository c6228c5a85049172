"""GRPO's acceptance story on the real model, in a real headless Chromium: pick the task, watch the rewards
and the sampled completions move, then evaluate base against tuned on held-out prompts.

The one real-model GRPO run of the suite also carries the learning claim: on the arithmetic demo, with the
default reward mix (exact_answer, and a number-only format through regex at 0.5), the tuned model's
held-out mean reward beats the base model's. Sized to the suite: 8 steps of 8 completions (2 prompts x 4)
of at most 16 tokens. On 2026-12-03 (2-core Zen 5) the sampled completions met the format at step 4 and
the held-out reward went from 0.19 to 0.56 after 12 steps (bench/grpo_demo.py runs the task's 30).
"""

import json

import pytest
from playwright.sync_api import expect

from backend.events import end_event, read_events
from tests.helpers import pick, set_number, wait_for
from tests.test_browser import start_run

APP_WARM_JOBS = False  # one run: the warm job server's imports would not pay for themselves

pytestmark = pytest.mark.slow


# The step of the completions the table shows: its first row's first whole-number cell (the step column).
STEP_SHOWN = """() => {
  const row = document.querySelector('#completions-table div[role=row]');  // the body's rows (the header's is a tr)
  const first = row ? row.innerText.trim().split(/\\s+/)[0] : "";
  return /^[0-9]+$/.test(first) ? Number(first) : -1;
}"""


def test_grpo_on_the_demo_shows_rewards_and_completions_and_the_tuned_model_earns_more(app, page):
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#opt-task").get_by_text("grpo", exact=True).click()
    summary = page.locator("#dataset-summary")
    # The task's defaults follow the switch: the arithmetic prompts, and the rewards they are scored with.
    dataset = page.locator("#opt-dataset textarea, #opt-dataset input").first
    expect(dataset).to_have_value("demo_arithmetic", timeout=60_000)
    # The check started by the task switch still reads the previous dataset (it says "Format: prompts" too);
    # the new dataset's own check follows it, and on a busy app the first check of the page takes ~30 s.
    expect(summary).to_contain_text("Rewards see: each prompt, and the reference columns answer", timeout=90_000)
    expect(summary).to_contain_text("Format: prompts")

    page.get_by_role("tab", name="Train").click()
    page.locator("#grpo-options").get_by_text("Rewards (grpo)").first.click()
    expect(page.locator("#opt-rewards input, #opt-rewards textarea").first).to_have_value("exact_answer, regex:0.5")
    set_number(page, "opt-max_steps", 8)
    set_number(page, "opt-max_completion_length", 16)
    set_number(page, "opt-val_size", 8)
    run_id = start_run(page)

    # Live: the reward chart (total, each component, completion length; each smoothed over its raw line)
    # and the table of what the model now writes, which moves on as steps pass.
    rewards = page.locator("#reward-chart")
    expect(rewards.locator(".scatterlayer .trace")).to_have_count(8, timeout=180_000)
    expect(rewards).to_contain_text("reward/regex")
    table = page.locator("#completions-table")
    expect(table).to_contain_text("Answer with a single number", timeout=60_000)
    progress = page.locator(f"#run-progress[data-run='{run_id}']")
    steps_shown = set()
    for _ in range(1200):  # until the table has shown two steps (at most 10 minutes)
        steps_shown.add(page.evaluate(STEP_SHOWN))
        if len(steps_shown - {-1}) >= 2 or progress.get_attribute("data-status") == "completed":
            break
        page.wait_for_timeout(500)
    assert len(steps_shown - {-1}) >= 2, steps_shown  # it moved on with the run, not one snapshot

    # The rest of the run on the Evaluate tab, whose page is quieter: Train's live charts, redrawn every 2 s,
    # cost the app and the browser about half a core more (leaving Train parks its timers). The tab lists the
    # run as running, and follows it to its end without a click (the page's check for finished runs).
    page.get_by_role("tab", name="Evaluate").click()
    row = page.locator("#eval-table tbody tr", has_text=run_id)
    expect(row).to_contain_text("running")
    end = wait_for(lambda: end_event(read_events(app[1] / "runs" / run_id)), timeout=600, interval=1)
    assert end["status"] == "completed", end
    expect(row).to_contain_text("completed", timeout=30_000)

    # Evaluate, base against tuned, on the run's 8 held-out prompts.
    pick(page, "eval-run", run_id)
    set_number(page, "eval-max-rows", 8)
    set_number(page, "eval-max-new", 16)  # the completion length it trained with: a number fits, the base rambles
    page.locator("#evaluate-btn").click()
    comparison = page.locator("#eval-comparison")
    expect(comparison).to_contain_text("reward/exact_answer", timeout=180_000)
    expect(comparison).to_contain_text("reward/regex")
    expect(page.locator("#eval-rows")).to_contain_text("base_reward")

    # The learning claim, from the rows the tab offers for download (each prompt's reward, base and tuned).
    link = page.locator("#eval-downloads a[href$='.jsonl']").first
    rows = [json.loads(line) for line in page.request.get(link.get_attribute("href")).text().splitlines()]
    assert len(rows) == 8
    base = sum(r["base_reward"] for r in rows) / len(rows)
    tuned = sum(r["reward"] for r in rows) / len(rows)
    print(f"\nheld-out mean reward: base {base:.3f}, tuned {tuned:.3f}")
    print("tuned:", [r["prediction"] for r in rows], "\nbase:", [r["base_prediction"] for r in rows])
    assert tuned > base + 0.2, (base, tuned, rows)
