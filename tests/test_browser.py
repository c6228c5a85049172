"""The user's story in a real headless Chromium: demo data → short LoRA run → live chart → chat."""

import re
import socket

import pytest
import yaml
from playwright.sync_api import expect

from backend.capability import describe, hardware_summary
from tests.helpers import DATA, pick, set_number
from webui.open_tab_timers import PARKED_S, intervals_script
from webui.tab_dataset import RENDERED_ROWS

APP_WARM_JOBS = True  # the story starts several runs: each after the first is forked from the warm job server

# The real model: the browser story and what evaluation finds are the point.
pytestmark = pytest.mark.slow


def start_run(page) -> str:
    """Click Start and return the new run's id (the message still names the previous run until then)."""
    pattern = r"Started run (\S+)\."
    previous = re.search(pattern, page.locator("#train-message").inner_text())
    page.locator("#start-btn").click()
    page.wait_for_function(
        "previous => { const m = /Started run (\\S+)\\./.exec(document.querySelector('#train-message').innerText);"
        " return m && m[1] !== previous; }",
        arg=previous.group(1) if previous else None,
        timeout=60_000,
    )
    return re.search(pattern, page.locator("#train-message").inner_text()).group(1)


def wait_completed(page, run_id: str, timeout_s: int) -> None:
    """Wait until the Train tab's progress, showing run_id, says it completed."""
    progress = page.locator(f"#run-progress[data-run='{run_id}']")
    expect(progress).to_have_attribute("data-status", "completed", timeout=timeout_s * 1000)


def refresh_eval_runs(page, run_id: str, timeout_s: int = 30) -> None:
    """Wait, without pressing anything, until the Evaluate tab lists run_id as completed: the list follows."""
    row = page.locator("#eval-table tbody tr", has_text=run_id)
    expect(row).to_contain_text("completed", timeout=timeout_s * 1000)


def chart_points(page) -> int:
    caption = page.locator("#chart-caption").inner_text()
    match = re.search(r"(\d+) train points", caption)
    return int(match.group(1)) if match else 0


@pytest.mark.parametrize(
    "locale, words",
    [
        ("zh-CN", {"tabs": ["数据集", "训练", "评估", "对话"], "start": "开始", "error": "第 3 行：JSON 无效"}),
        (
            "en-US",
            {"tabs": ["Dataset", "Train", "Evaluate", "Chat"], "start": "Start", "error": "line 3: invalid JSON"},
        ),
    ],
)
def test_the_page_speaks_the_browsers_language_and_shows_no_placeholder_headers(page, locale, words):
    """Runs first, on a fresh app: no table anywhere shows Gradio's placeholder headers 1 2 3."""
    reader = page.context.browser.new_page(locale=locale, viewport={"width": 1400, "height": 1000})
    reader.goto(page.url)
    for name in words["tabs"]:
        expect(reader.get_by_role("tab", name=name)).to_be_visible(timeout=30_000)
    reader.get_by_role("tab", name=words["tabs"][1]).click()
    expect(reader.locator("#start-btn")).to_have_text(words["start"])
    for i in range(8):
        reader.get_by_role("tab").nth(i).click()
        headers = reader.locator("th, [role=columnheader]").all_inner_texts()
        assert not {text.strip() for text in headers} & {"1", "2", "3"}, headers
    reader.get_by_role("tab", name=words["tabs"][0]).click()
    reader.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "bad_line.jsonl"))
    expect(reader.locator("#dataset-summary")).to_contain_text(words["error"], timeout=30_000)
    reader.close()


def test_upload_with_an_error_is_refused_with_its_line(page):
    page.get_by_role("tab", name="Dataset").click()
    expect(page.locator("#dataset-summary")).to_contain_text("Format: alpaca", timeout=60_000)
    page.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "bad_line.jsonl"))
    expect(page.locator("#dataset-summary")).to_contain_text("line 3: invalid JSON", timeout=30_000)
    page.locator("#dataset-upload input[type=file]").set_input_files(str(DATA / "openai.jsonl"))
    expect(page.locator("#dataset-summary")).to_contain_text("Format: openai", timeout=30_000)


def test_a_tab_switch_parks_the_timers_of_the_other_drawn_tabs(page):
    """Each tab's select runs the page's script that parks the other drawn tabs' timers (webui/open_tab_timers.py);
    a select that runs late, or that reaches a tab not drawn yet, parks nothing a person can see."""
    selects = page.evaluate(
        "() => window.gradio_config.dependencies.filter(d => d.js && d.js.includes('aria-selected'))"
        ".map(d => [d.targets[0][1], d.outputs.length])"
    )
    assert len(selects) == page.locator("[role=tab][data-tab-id]").count()
    assert {event for event, _ in selects} == {"select"} and len({n for _, n in selects}) == 1 and selects[0][1] > 0
    page.get_by_role("tab", name="Runs").click()
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#tab-train-button")).to_have_attribute("aria-selected", "true")
    owners, intervals = ["train", "runs", "never-drawn"], [1.0, 2.0, 3.0]
    assert page.evaluate(intervals_script(owners, intervals, "train")) == [1.0, PARKED_S, 3.0]
    # The page's first select (Dataset's), answered after Train opened: Train is still live.
    assert page.evaluate(intervals_script(owners, intervals, "dataset")) == [1.0, PARKED_S, 3.0]
    # Runs' own select counts it open before the strip shows it.
    assert page.evaluate(intervals_script(owners, intervals, "runs")) == [1.0, 2.0, 3.0]


# Counts the frames that Gradio's status trackers ask the browser itself for: installed before any of the
# page's own scripts, so it sees what the app's frame script (webui/idle_cost.py) hands on, if anything.
TRACKER_FRAMES = """(() => {
  const frame = window.requestAnimationFrame.bind(window);
  window.trackerFrames = 0;
  window.requestAnimationFrame = (callback) => {
    if ((new Error().stack || "").includes("statustracker")) window.trackerFrames++;
    return frame(callback);
  };
})()"""


def test_an_idle_page_asks_the_browser_for_no_status_tracker_frames(page):
    """Without the app's frame script, a loop of Gradio's status trackers that outlives the loading screen
    asks for 60 frames a second for as long as the page is open (webui/idle_cost.py)."""
    idle = page.context.browser.new_page()
    idle.add_init_script(TRACKER_FRAMES)
    idle.goto(page.url)
    expect(idle.get_by_role("tab", name="Train")).to_be_visible(timeout=60_000)
    idle.wait_for_timeout(1000)
    before = idle.evaluate("() => window.trackerFrames")
    idle.wait_for_timeout(2000)
    asked = idle.evaluate("() => window.trackerFrames") - before
    idle.close()
    assert asked <= 2, asked  # at 60 a second: 120


def test_dataset_checks_show_rendered_rows_histogram_leakage_and_eta(page, small_model):
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
    # The estimate's speed trial trains six steps of the chosen model: the tiny one, as the wiring is the point.
    choose_model(page, small_model)
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#estimate-btn").click()
    expect(page.locator("#dataset-cost")).to_contain_text(re.compile(r"ETA ≈ \d+ min"), timeout=180_000)
    choose_model(page, "default")


def test_demo_dataset_short_lora_run_live_chart_then_chat(page):
    page.get_by_role("tab", name="Dataset").click()
    pick(page, "demo-dataset", "demo_identity")
    expect(page.locator("#opt-dataset textarea, #opt-dataset input").first).to_have_value("demo_identity")
    expect(page.locator("#dataset-summary")).to_contain_text("Format: alpaca", timeout=60_000)
    expect(page.locator("#dataset-preview")).to_contain_text("Forge", timeout=30_000)

    page.get_by_role("tab", name="Model").click()
    expect(page.locator("#opt-model textarea, #opt-model input").first).to_have_value("default")
    expect(page.locator("#model-fit")).to_contain_text("LlamaForCausalLM", timeout=30_000)  # will it fit, per method
    hardware = hardware_summary()
    if not hardware["cuda"] and not hardware["bitsandbytes_cpu"]:  # not offered where it cannot run, and says why
        expect(page.locator("#opt-method")).to_contain_text("qlora: quantization_bit=4 needs a CUDA GPU, or a ")
        page.locator("#opt-method input").click()
        expect(page.get_by_role("option", name="freeze", exact=True)).to_be_visible()
        expect(page.get_by_role("option", name="qlora", exact=True)).to_have_count(0)
        page.keyboard.press("Escape")

    page.get_by_role("tab", name="Train").click()
    page.get_by_text("Devices and precision", exact=True).click()  # a closed accordion renders nothing
    expect(page.locator("#hardware-summary")).to_contain_text(describe(hardware).split(" — ")[0])  # what it has
    set_number(page, "opt-max_steps", 4)
    set_number(page, "opt-learning_rate", 0.001)
    run_id = start_run(page)

    expect(page.locator("#chart-caption")).to_contain_text(re.compile(r"[1-9]\d* train points"), timeout=180_000)
    first = chart_points(page)
    page.wait_for_function(
        f"() => /([0-9]+) train points/.exec(document.querySelector('#chart-caption').innerText)?.[1] > {first}",
        timeout=120_000,
    )
    expect(page.locator("#loss-chart .scatterlayer .trace").first).to_be_visible()
    wait_completed(page, run_id, 180)
    expect(page.locator("#run-progress")).to_contain_text("step 4/4")
    expect(page.locator("#run-speed")).to_contain_text(re.compile(r"^\d+(\.\d)? tok/s \(MFU \d+%\)$"))
    expect(page.locator("#log-tail textarea")).to_have_value(re.compile("step 4/4"))
    expect(page.locator("#runs-table")).to_contain_text(run_id)
    assert chart_points(page) == 4
    expect(page.locator("#chart-caption")).to_contain_text("1 eval points")
    # The train line smoothed over its faint raw line, and the eval line.
    expect(page.locator("#loss-chart .scatterlayer .trace")).to_have_count(3)

    # The finished run is in the Evaluate and Chat lists without a click on any refresh button.
    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#eval-table")).to_contain_text(run_id, timeout=30_000)
    page.get_by_role("tab", name="Chat").click()
    expect(page.locator("#chat-target input")).to_have_value(run_id, timeout=30_000)  # the newest, picked
    pick(page, "chat-target", run_id)
    page.locator("#chat-input textarea").fill("What is your name?")
    page.locator("#chat-send").click()
    bot = page.locator("#chatbot [data-testid=bot]").last
    expect(bot).to_have_text(re.compile(r"\w"), timeout=120_000)  # any reply: "I'm M.L.E.S." is one
    assert "⚠️" not in bot.inner_text()  # an error is shown in the bubble, and is not a reply


def test_classification_run_trains_and_shows_its_plots(page, small_model):
    page.get_by_role("tab", name="Train").click()
    set_number(page, "opt-learning_rate", 0.0002)  # back to the sft default, which the task switch then follows
    page.get_by_role("tab", name="Dataset").click()
    pick(page, "demo-dataset", "demo_reviews")
    page.locator("#opt-task").get_by_text("classification", exact=True).click()
    expect(page.locator("#dataset-summary")).to_contain_text("Format: classification", timeout=30_000)
    choose_model(page, small_model)  # the plots are the point; the real model's accuracy is test_evaluate.py's
    page.get_by_role("tab", name="Train").click()
    expect(page.locator("#opt-learning_rate input[type=number]")).to_have_value("0.0005")  # the task's default
    set_number(page, "opt-max_steps", 30)
    set_number(page, "opt-learning_rate", 0.001)
    run_id = start_run(page)

    # Straight to Evaluate: its list shows the run while it trains and follows it to its end, with no click.
    page.get_by_role("tab", name="Evaluate").click()
    refresh_eval_runs(page, run_id, timeout_s=300)
    pick(page, "eval-run", run_id)
    expect(page.locator("#cls-scores")).to_contain_text("accuracy", timeout=30_000)
    expect(page.locator("#confusion-plot .heatmaplayer").first).to_be_attached()
    expect(page.locator("#roc-plot .scatterlayer .trace")).to_have_count(2)  # the curve and the chance line
    page.locator("#cls-compare-btn").click()
    expect(page.locator("#cls-comparison")).to_contain_text("difference", timeout=60_000)
    page.locator("#cls-text textarea").fill("Dreadful. It broke on the first day and nobody helped.")
    page.locator("#cls-btn").click()
    expect(page.locator("#cls-probs")).to_contain_text("negative", timeout=60_000)


def choose_model(page, model: str) -> None:
    page.get_by_role("tab", name="Model").click()
    box = page.locator("#opt-model textarea, #opt-model input").first
    box.fill(model)
    box.press("Tab")


def test_runs_tab_clones_loads_compares_and_asks_three_models(app, page, tmp_path, small_model):
    runs = sorted((app[1] / "runs").iterdir())
    run_a = next(r.name for r in runs if yaml.safe_load((r / "config.yaml").read_text())["dataset"] == "demo_identity")
    page.get_by_role("tab", name="Runs").click()
    expect(page.locator("#runs-history")).to_contain_text(run_a, timeout=30_000)

    # Load config fills the form from a saved YAML.
    saved = tmp_path / "saved.yaml"
    # Learning rates here are no task's default (2e-4, 5e-4): a task switch moves a value still at the
    # previous task's default, and the loads and clones below switch the task back from the classification test's.
    saved.write_text("dataset: demo_identity\nmax_steps: 5\nlearning_rate: 0.0004\nlora_rank: 4\n")
    page.get_by_role("tab", name="Train").click()
    page.get_by_text("Preview command").click()
    page.locator("input[type=file][accept*='.yaml']").set_input_files(str(saved))
    expect(page.locator("#train-message")).to_contain_text("Loaded saved.yaml", timeout=30_000)
    expect(page.locator("#opt-learning_rate input[type=number]")).to_have_value("0.0004")
    expect(page.locator("#opt-max_steps input[type=number]")).to_have_value("5")

    # Clone A back into the form, then change two options: B is A with another learning rate, on the
    # tiny model (what B learns is not the point here).
    page.get_by_role("tab", name="Runs").click()
    pick(page, "runs-selected", run_a)
    page.locator("#runs-clone").click()
    expect(page.locator("#runs-message")).to_contain_text(f"The form now holds run {run_a}", timeout=30_000)
    expect(page.locator("#opt-learning_rate input[type=number]")).to_have_value("0.001", timeout=30_000)
    expect(page.locator("#opt-max_steps input[type=number]")).to_have_value("4")
    expect(page.locator("#opt-dataset textarea, #opt-dataset input").first).to_have_value("demo_identity")
    choose_model(page, small_model)
    page.get_by_role("tab", name="Train").click()
    set_number(page, "opt-learning_rate", 0.0003)
    run_b = start_run(page)
    wait_completed(page, run_b, 300)

    page.get_by_role("tab", name="Runs").click()
    pick(page, "runs-selected", run_b)
    page.locator("#runs-compare").click()
    expect(page.locator("#compare-chart .scatterlayer .trace")).to_have_count(4, timeout=30_000)  # 2 runs x train/eval
    diff = page.locator("#compare-diff")
    expect(diff).to_contain_text("learning_rate")
    expect(diff).to_contain_text("model")
    # Only what differs: the header and two rows. (Gradio's table draws its body rows outside <tbody>.)
    expect(diff.locator("[role=row]")).to_have_count(3)
    expect(diff).to_contain_text("0.0003")
    expect(page.locator("#compare-metrics")).to_contain_text("eval_loss")

    # A second browser tab (another user) sees the same history.
    other = page.context.browser.new_page()
    other.goto(page.url)
    other.get_by_role("tab", name="Runs").click()
    expect(other.locator("#runs-history")).to_contain_text(run_b, timeout=30_000)
    expect(other.locator("#runs-history")).to_contain_text(run_a)
    other.close()

    page.get_by_text("Ask the base model and two runs the same question").click()
    page.locator("#three-way-prompt textarea").fill("What is your name?")
    page.locator("#three-way-ask").click()
    # B is the tiny random model: its answer arrives, but need not be words.
    for key, answer in (("base", r"\w{2,}"), ("a", r"\w{2,}"), ("b", r"[\s\S]")):
        expect(page.locator(f"#three-way-{key} textarea")).to_have_value(re.compile(answer), timeout=120_000)
        assert "⚠️" not in page.locator(f"#three-way-{key} textarea").input_value()


def test_generation_run_is_evaluated_against_its_base(app, page):
    page.get_by_role("tab", name="Evaluate").click()
    # Run B of the Runs tab's test, on the tiny model: the newest in the app's workspace (run ids begin
    # with their start time). What the tab shows is the point; that tuning beats the base on the real
    # model is test_evaluate.py's. Read from the folder, not from the Train tab's table, which is not
    # drawn while another tab is open.
    run_id = sorted(path.name for path in (app[1] / "runs").iterdir())[-1]
    refresh_eval_runs(page, run_id)
    pick(page, "eval-run", run_id)
    expect(page.locator("#eval-chart .scatterlayer .trace").first).to_be_visible(timeout=30_000)
    set_number(page, "eval-max-rows", 2)
    set_number(page, "eval-max-new", 16)
    page.locator("#evaluate-btn").click()
    comparison = page.locator("#eval-comparison")
    expect(comparison).to_contain_text("rouge1", timeout=180_000)
    expect(comparison).to_contain_text("difference")
    expect(page.locator("#eval-rows")).to_contain_text("base_prediction")
    page.locator("#forgetting-btn").click()
    expect(page.locator("#forgetting-note")).to_contain_text("Perplexity on general text", timeout=180_000)


def test_dpo_run_draws_its_reward_chart_beside_the_loss(page, small_model):
    choose_model(page, small_model)  # the charts are the point, not what the model learns
    page.get_by_role("tab", name="Dataset").click()
    pick(page, "demo-dataset", "demo_preference")
    page.locator("#opt-task").get_by_text("dpo", exact=True).click()
    summary = page.locator("#dataset-summary")
    expect(summary).to_contain_text("Format: preference", timeout=60_000)
    expect(summary).to_contain_text("its chosen answer (shown below as trained) and a rejected answer")
    page.get_by_role("tab", name="Train").click()
    page.locator("#preference-options").get_by_text("Preference (dpo, orpo, kto)").click()
    expect(page.locator("#opt-pref_beta input[type=number]")).to_have_value("0.1")
    set_number(page, "opt-max_steps", 3)
    set_number(page, "opt-learning_rate", 0.0001)
    # Two pairs a step, so the chart has a few points quickly (the 320-token tiny model's steps are short).
    set_number(page, "opt-per_device_train_batch_size", 2)
    run_id = start_run(page)
    wait_completed(page, run_id, 300)
    rewards = page.locator("#reward-chart")
    # chosen, rejected, margin and accuracy: each smoothed over its raw line
    expect(rewards.locator(".scatterlayer .trace")).to_have_count(8, timeout=30_000)
    expect(rewards).to_contain_text("margin")
    expect(page.locator("#loss-chart .scatterlayer .trace").first).to_be_visible()
    assert chart_points(page) == 3


def test_a_grid_sweep_from_the_sweeps_tab_finishes_its_trials_marks_the_best_and_draws_its_charts(page, small_model):
    choose_model(page, small_model)  # the trials' plumbing and the view are the point, not what they learn
    page.get_by_role("tab", name="Dataset").click()
    pick(page, "demo-dataset", "demo_identity")
    page.locator("#opt-task").get_by_text("sft", exact=True).click()
    page.get_by_role("tab", name="Train").click()
    set_number(page, "opt-max_steps", 4)
    page.get_by_role("tab", name="Sweeps").click()
    page.locator("#sweep-space .cm-content").fill("learning_rate: [1.0e-3, 3.0e-3]\n")
    page.locator("#sweep-sampler").get_by_text("grid", exact=True).click()  # the form starts on SweepSpec's tpe
    page.locator("#sweep-start").click()
    expect(page.locator("#sweep-message")).to_contain_text("Started sweep", timeout=60_000)

    summary = page.locator("#sweep-summary")
    expect(summary).to_have_attribute("data-status", "completed", timeout=300_000)
    expect(summary).to_contain_text("2/2 trials ended (2 completed)")
    best = summary.get_attribute("data-best")
    table = page.locator("#sweep-trials-table")
    rows = table.locator("div[role=row]")  # the body's rows (the header's is a tr)
    expect(rows.filter(has_text="completed")).to_have_count(2)
    expect(rows.filter(has_text="★")).to_contain_text(best)
    expect(table.get_by_role("columnheader", name="machine")).to_be_visible()
    expect(rows.filter(has_text=f"{socket.gethostname()} pid ")).to_have_count(2)  # which machine ran each trial
    expect(page.locator("#sweep-history .scatterlayer .trace").first).to_be_attached(timeout=30_000)
    expect(page.locator("#sweep-parallel .js-plotly-plot")).to_be_attached()
    expect(page.locator("#sweep-importance .barlayer")).to_be_attached()  # learning_rate, the one option searched

    page.locator("#sweep-best-chat").click()
    expect(page.locator("#chat-target input")).to_have_value(best, timeout=30_000)


def test_an_image_dataset_shows_its_thumbnails_trains_a_vision_model_and_chats_with_an_image(
    app, page, tmp_path, tiny_vision_model_of, shapes_dataset
):
    """The vision story on the tiny random Idefics3 (what it answers is not the point): a zip of data and
    images uploaded, its thumbnails and image count, two LoRA steps, then a reply to an uploaded image."""
    import zipfile

    archive = tmp_path / "shapes.zip"
    with zipfile.ZipFile(archive, "w") as z:
        for path in [shapes_dataset, *sorted((shapes_dataset.parent / "images").iterdir())]:
            z.write(path, path.relative_to(shapes_dataset.parent).as_posix())
    choose_model(page, str(tiny_vision_model_of("idefics3")))  # first: a text-only model would refuse the images
    page.get_by_role("tab", name="Dataset").click()
    page.locator("#opt-task").get_by_text("sft", exact=True).click()
    page.locator("#dataset-upload input[type=file]").set_input_files(str(archive))
    summary = page.locator("#dataset-summary")
    expect(summary).to_contain_text("Images: 4 in 4 rows, up to 1 in one row", timeout=60_000)
    thumbnails = page.locator("#dataset-thumbnails")
    expect(thumbnails.locator("img")).to_have_count(RENDERED_ROWS, timeout=30_000)  # the rendered rows' images
    expect(thumbnails).to_contain_text("row 1 · image 1 of 1")
    expect(page.locator("#dataset-cost")).to_contain_text("tokens to train")  # image tokens counted, not refused

    page.get_by_role("tab", name="Train").click()
    set_number(page, "opt-max_steps", 2)
    run_id = start_run(page)
    wait_completed(page, run_id, 180)

    page.get_by_role("tab", name="Chat").click()
    pick(page, "chat-target", run_id)
    page.locator("#chat-image input[type=file]").set_input_files(str(shapes_dataset.parent / "images" / "1.png"))
    expect(page.locator("#chat-image img")).to_be_visible(timeout=30_000)
    page.locator("#chat-input textarea").fill("What colour is this?")
    bots = page.locator("#chatbot [data-testid=bot]")
    earlier = bots.count()  # the demo story's chat stays on the page: wait for this reply, not that one
    page.locator("#chat-send").click()
    expect(bots).to_have_count(earlier + 1, timeout=120_000)
    bot = bots.last
    expect(bot).to_have_text(re.compile(r"\S"), timeout=120_000)
    assert "⚠️" not in bot.inner_text()
    # The reply read the image from the uploads, where the chat kept it (the zip's copy sits in its own images/).
    assert [p for p in (app[1] / "uploads").rglob("1*.png") if p.parent.name != "images"]


def test_after_every_story_the_browser_holds_no_run_history_of_the_studio(page):
    """Gradio's run history would keep each call's inputs and outputs in the browser, re-written on every
    message: the page's costliest script, and a shared studio's work left behind (launch.py turns it off)."""
    assert page.request.get(page.url + "config").json()["run_history"] is False
    kept = page.evaluate("() => Object.keys(localStorage).filter((key) => key.startsWith('gradio:run-history'))")
    assert kept == []
