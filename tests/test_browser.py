"""The user's story in a real headless Chromium: demo data → short LoRA run → live chart → chat."""

import re

import pytest
from playwright.sync_api import expect, sync_playwright

from tests.conftest import DATA

CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture(scope="module")
def page(app):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        page.goto(app[0])
        yield page
        browser.close()


def pick(page, elem_id, option):
    """Choose an option in a Gradio dropdown."""
    page.locator(f"#{elem_id} input").click()
    page.get_by_role("option", name=option, exact=True).click()


def set_number(page, elem_id, value):
    box = page.locator(f"#{elem_id} input[type=number]")
    box.fill(str(value))
    box.press("Tab")


def chart_points(page) -> int:
    caption = page.locator("#chart-caption").inner_text()
    match = re.search(r"(\d+) train points", caption)
    return int(match.group(1)) if match else 0


def test_upload_with_an_error_is_refused_with_its_line(page):
    page.get_by_role("tab", name="Dataset").click()
    expect(page.locator("#dataset-summary")).to_contain_text("Format: alpaca")
    page.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "bad_line.jsonl"))
    expect(page.locator("#dataset-summary")).to_contain_text("line 3: invalid JSON", timeout=30_000)
    page.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "openai.jsonl"))
    expect(page.locator("#dataset-summary")).to_contain_text("Format: openai", timeout=30_000)


def test_dataset_checks_show_rendered_rows_histogram_leakage_and_eta(page):
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "leaky.jsonl"))
    summary = page.locator("#dataset-summary")
    expect(summary).to_contain_text("Format: prompt_completion", timeout=30_000)
    expect(summary).to_contain_text("Exact duplicates: 6")
    expect(summary).to_contain_text("Leakage: 1 validation rows also occur in training")
    rendered = page.locator("#dataset-rendered")
    expect(rendered).to_contain_text("What is 1 plus 2?")
    trained, masked = "rgba(22, 163, 74", "rgba(156, 163, 175"  # the tab's colours for trained/masked tokens
    expect(rendered.locator(".token", has_text="3.<|im_end|>").first).to_have_attribute(
        "style", re.compile(re.escape(trained))
    )
    expect(rendered.locator(".token", has_text="What is 1 plus 2?").first).to_have_attribute(
        "style", re.compile(re.escape(masked))
    )
    expect(page.locator("#length-histogram .trace.bars").first).to_be_attached()
    expect(page.locator("#length-histogram")).to_contain_text("0.0% truncated")
    expect(page.locator("#dataset-cost")).to_contain_text("tokens to train")
    page.locator("#estimate-btn").click()
    expect(page.locator("#dataset-cost")).to_contain_text(re.compile(r"ETA ≈ \d+ min"), timeout=180_000)


def test_demo_dataset_short_lora_run_live_chart_then_chat(page):
    page.get_by_role("tab", name="Dataset").click()
    pick(page, "demo-dataset", "demo_identity")
    expect(page.locator("#opt-dataset textarea, #opt-dataset input").first).to_have_value("demo_identity")
    expect(page.locator("#dataset-summary")).to_contain_text("Format: alpaca")
    expect(page.locator("#dataset-preview")).to_contain_text("Forge")

    page.get_by_role("tab", name="Model").click()
    expect(page.locator("#opt-model textarea, #opt-model input").first).to_have_value("default")

    page.get_by_role("tab", name="Train").click()
    set_number(page, "opt-max_steps", 8)
    set_number(page, "opt-learning_rate", 0.001)
    page.locator("#start-btn").click()
    expect(page.locator("#train-message")).to_contain_text("Started run", timeout=30_000)
    run_id = re.search(r"Started run (\S+)\.", page.locator("#train-message").inner_text()).group(1)

    expect(page.locator("#chart-caption")).to_contain_text(re.compile(r"[1-9]\d* train points"), timeout=180_000)
    first = chart_points(page)
    page.wait_for_function(
        f"() => /([0-9]+) train points/.exec(document.querySelector('#chart-caption').innerText)?.[1] > {first}",
        timeout=120_000,
    )
    expect(page.locator("#loss-chart .scatterlayer .trace").first).to_be_visible()
    expect(page.locator("#run-progress")).to_have_attribute("data-status", "completed", timeout=180_000)
    expect(page.locator("#run-progress")).to_contain_text("step 8/8")
    expect(page.locator("#log-tail textarea")).to_have_value(re.compile("step 8/8"))
    expect(page.locator("#runs-table")).to_contain_text(run_id)
    assert chart_points(page) == 8
    expect(page.locator("#chart-caption")).to_contain_text("1 eval points")
    expect(page.locator("#loss-chart .scatterlayer .trace")).to_have_count(2)  # train and eval lines

    page.get_by_role("tab", name="Chat").click()
    page.get_by_role("button", name="↻ runs").click()
    pick(page, "chat-target", run_id)
    page.locator("#chat-input textarea").fill("What is your name?")
    page.locator("#chat-send").click()
    bot = page.locator("#chatbot [data-testid=bot]").last
    expect(bot).to_have_text(re.compile(r"\w{2,}"), timeout=120_000)
