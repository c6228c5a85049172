"""In a browser: the bundled smoke benchmark, base against a tiny run, from the Evaluate tab; then the same
job's table through the benchmark_status API. On the tiny model: the table and its plumbing are the point."""

from __future__ import annotations

import json

from gradio_client import Client
from playwright.sync_api import expect

from backend.runs.job_manager import JobManager
from tests.helpers import train_in_process

QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0}


def test_benchmark_base_against_a_run_shows_the_table_and_the_api_returns_it(app, page, small_model, secret_dataset):
    url, workspace = app
    jobs = JobManager(workspace)
    run_id = train_in_process(jobs, {"model": small_model, "dataset": str(secret_dataset), **QUICK})
    jobs.shutdown()

    page.reload()
    page.get_by_role("tab", name="Evaluate").click()
    expect(page.locator("#bench-tasks textarea")).to_be_visible(timeout=30_000)
    assert page.locator("#bench-tasks textarea").input_value().endswith("tuneforge_smoke")
    page.locator("#bench-models input").click()
    page.get_by_role("option", name=run_id).click()
    page.locator("#bench-limit input").fill("3")
    page.locator("#bench-start").click()
    table = page.locator("#bench-table")
    expect(table).to_contain_text(f"Δ {run_id}", timeout=240_000)
    expect(table).to_contain_text("tuneforge_smoke/arithmetic")
    expect(table).to_contain_text("tuneforge_smoke/unit_conversion")
    expect(page.locator("#bench-status")).to_contain_text("completed", timeout=60_000)

    (job,) = [p.name for p in (workspace / "evaluations").iterdir()]
    status = Client(url, verbose=False).predict(job, api_name="/benchmark_status")
    assert status["status"] == "completed"
    rows = {(r["model"], r["task"], r["metric"]): r for r in status["results"]}
    assert {m for m, _, _ in rows} == {"base", run_id} and all(r["n"] == 3 for r in rows.values())
    kept = json.loads((workspace / "runs" / run_id / "benchmarks" / f"{job}.json").read_text())
    assert len(kept["rows"]) == len(rows) // 2
