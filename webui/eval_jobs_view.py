"""Evaluate tab's benchmark and judge sections: start a background job, follow it, show its table.

Both are jobs of backend.evaluation.eval_jobs, followed by a timer that reads their files, so they
go on when the page is closed; a reload shows the newest one again. A job started while a run trains
shows as queued until its turn; an aborted or failed one resumes from its own Resume button (a judge's
with the key in the box again, since none is kept).
"""

from __future__ import annotations

import math

import gradio as gr
import pandas as pd

from backend.errors import TuneForgeError
from backend.evaluation.eval_jobs import EvalJobs
from backend.paths import ASSETS_DIR
from webui.context import AppContext
from webui.empty import empty_table, fitted
from webui.i18n import headed, say, t
from webui.lanes import DEVICE, JOBS, STATUS
from webui.refusals import on_refusal_raise
from webui.sent import SentMemory

SMOKE_BENCHMARK = ASSETS_DIR / "benchmarks" / "tuneforge_smoke"
POLL_S = 2.0  # each tick is a message the whole page processes: webui/idle_cost.py


def benchmark_table(results: list[dict], models: list[str]) -> pd.DataFrame:
    """One row per task and metric: each model's value and stderr, and each later model's difference from
    the first (with the stderr of the difference, the two runs taken as independent samples)."""
    if not results:
        return empty_table("empty.benchmark")
    cells = {(r["task"], r["metric"], r["model"]): r for r in results}
    keys = list(dict.fromkeys((r["task"], r["metric"]) for r in results))
    present = [m for m in models if any(r["model"] == m for r in results)]
    rows = []
    for task, metric in keys:
        row = {"task": task, "metric": metric}
        for model in present:
            cell = cells.get((task, metric, model))
            row["n"] = row.get("n") or (cell or {}).get("n")
            row[model] = round(cell["value"], 4) if cell else None
            row[f"{model} ±"] = round(cell["stderr"], 4) if cell and cell["stderr"] is not None else None
        first = cells.get((task, metric, present[0]))
        for model in present[1:]:
            cell = cells.get((task, metric, model))
            if first and cell:
                row[f"Δ {model}"] = round(cell["value"] - first["value"], 4)
                spread = [s for s in (first["stderr"], cell["stderr"]) if s is not None]
                row[f"Δ {model} ±"] = round(math.sqrt(sum(s * s for s in spread)), 4) if spread else None
        rows.append(row)
    return headed(pd.DataFrame(rows))


def judge_rows(status: dict) -> pd.DataFrame:
    rows = [{k: r.get(k) for k in ("prompt", "a", "b", "verdict", "reason")} for r in status.get("rows", [])]
    return fitted(headed(pd.DataFrame(rows))) if rows else empty_table("empty.judge")


def progress_text(status: dict) -> str:
    state = say(f"msg.job_{status['status']}")
    if status["status"] == "queued" and status.get("queue_position"):
        state = say("msg.job_queued_at", n=status["queue_position"])
    progress = status.get("progress") or {}
    if status["status"] == "running" and progress.get("model"):
        done, total = progress.get("done") or 0, progress.get("total")
        state += f" · {progress['model']}: {done}/{total or '?'}"
    if status.get("error"):
        state += f" · {status['error']}"
    return f"`{status['id']}` · {state}"


def win_rate_text(status: dict) -> str:
    if status.get("win_rate") is None:
        return say("msg.judge_no_verdict") if status.get("rows") else ""
    low, high = status["ci"]
    a, b = status["request"]["models"]
    return say(
        "msg.judge_win_rate",
        b=b,
        a=a,
        rate=f"{100 * status['win_rate']:.0f}%",
        low=f"{100 * low:.0f}%",
        high=f"{100 * high:.0f}%",
        n=status.get("decided", 0),
    )


class EvalJobsView:
    """The two sections; EvaluateTab builds them inside its own layout and connects them."""

    def __init__(self, ctx: AppContext, evals: EvalJobs):
        self.ctx, self.evals = ctx, evals

    def build(self) -> None:
        with gr.Accordion(t("ui.evaluate.benchmark"), open=True, elem_id="benchmark-section"):
            gr.Markdown(t("ui.evaluate.benchmark_intro"))
            with gr.Row():
                self.tasks = gr.Textbox(
                    value=str(SMOKE_BENCHMARK), lines=2, label=t("ui.evaluate.benchmark_tasks"), scale=3,
                    info=t("ui.evaluate.benchmark_tasks_info"), elem_id="bench-tasks",
                )  # fmt: skip
                self.models = gr.Dropdown(
                    choices=["base"], value=["base"], multiselect=True, label=t("ui.evaluate.benchmark_models"),
                    scale=2, elem_id="bench-models",
                )  # fmt: skip
                self.fewshot = gr.Slider(0, 10, value=0, step=1, label=t("ui.evaluate.fewshot"), elem_id="bench-shots")
                self.limit = gr.Number(value=0, precision=0, minimum=0, label=t("ui.evaluate.limit"),
                    info=t("ui.evaluate.limit_info"), elem_id="bench-limit")  # fmt: skip
            with gr.Row():
                self.bench_start = gr.Button(t("ui.evaluate.benchmark_start"), variant="primary", elem_id="bench-start")
                self.bench_abort = gr.Button(t("ui.train.abort"), elem_id="bench-abort")
                self.bench_resume = gr.Button(t("ui.evaluate.resume"), elem_id="bench-resume")
            self.bench_id = gr.State(None)
            self.bench_line = gr.Markdown(elem_id="bench-status")
            self.bench_table = gr.Dataframe(
                empty_table("empty.benchmark"), label=t("ui.evaluate.benchmark_results"), interactive=False,
                elem_id="bench-table", elem_classes="tf-table",
            )  # fmt: skip
        with gr.Accordion(t("ui.evaluate.judge"), open=False, elem_id="judge-section"):
            gr.Markdown(t("ui.evaluate.judge_intro"))
            with gr.Row():
                self.judge_a = gr.Dropdown(choices=["base"], value="base", label=t("ui.evaluate.judge_a"))
                self.judge_b = gr.Dropdown(choices=["base"], label=t("ui.evaluate.judge_b"), elem_id="judge-b")
                self.judge_dataset = gr.Textbox(label=t("ui.evaluate.dataset"), scale=2,
                    placeholder=t("ui.evaluate.dataset_placeholder"))  # fmt: skip
                self.judge_limit = gr.Slider(1, 200, value=20, step=1, label=t("ui.evaluate.rows"))
            with gr.Row():
                self.judge_url = gr.Textbox(label=t("ui.evaluate.judge_url"), placeholder="http://127.0.0.1:11434/v1")
                self.judge_model = gr.Textbox(label=t("ui.evaluate.judge_model"))
                self.judge_key = gr.Textbox(
                    label=t("ui.evaluate.judge_key"), type="password", info=t("ui.evaluate.judge_key_info"),
                    elem_id="judge-key",
                )  # fmt: skip
            with gr.Row():
                self.judge_start = gr.Button(t("ui.evaluate.judge_start"), variant="primary", elem_id="judge-start")
                self.judge_abort = gr.Button(t("ui.train.abort"), elem_id="judge-abort")
                self.judge_resume = gr.Button(t("ui.evaluate.resume"), elem_id="judge-resume")
            self.judge_id = gr.State(None)
            self.judge_line = gr.Markdown(elem_id="judge-status")
            self.judge_verdict = gr.Markdown(elem_id="judge-win-rate")
            self.judge_table = gr.Dataframe(
                empty_table("empty.judge"), label=t("ui.evaluate.judge_rows"), interactive=False, wrap=True,
                elem_id="judge-table", elem_classes="tf-table",
            )  # fmt: skip
        self.timer = gr.Timer(POLL_S)

    def connect(self) -> None:
        # A tick sends only what changed; an event that writes a live output itself forgets the tick's memory.
        sent = SentMemory()
        bench_out = [self.bench_id, self.bench_line, self.bench_table, sent.memory]
        self.bench_start.click(
            self.on_benchmark, [self.tasks, self.models, self.fewshot, self.limit], bench_out, **DEVICE
        )
        self.bench_abort.click(self.on_abort, self.bench_id, None, **JOBS)
        self.bench_resume.click(self.on_resume, self.bench_id, [self.bench_line, sent.memory], **JOBS)
        judge_in = [self.judge_a, self.judge_b, self.judge_dataset, self.judge_limit]
        judge_in += [self.judge_url, self.judge_model, self.judge_key]
        judge_out = [self.judge_id, self.judge_line, self.judge_verdict, self.judge_table, sent.memory]
        self.judge_start.click(self.on_judge, judge_in, judge_out, **DEVICE)
        self.judge_abort.click(self.on_abort, self.judge_id, None, **JOBS)
        self.judge_resume.click(self.on_resume, [self.judge_id, self.judge_key], [self.judge_line, sent.memory], **JOBS)
        shown = [self.bench_line, self.bench_table, self.judge_line, self.judge_verdict, self.judge_table]
        sent.tick(self.timer, self.on_tick, [self.bench_id, self.judge_id], shown)
        self.ctx.blocks.load(self.on_load, None, [self.bench_id, self.judge_id], **STATUS)

    def choices(self, finished: list[str]) -> list:
        """The model pickers' updates for the completed generation runs."""
        runs = [r for r in finished if self.ctx.jobs.config(r).get("task", "sft") not in ("classification", "rm")]
        names = ["base", *runs]
        return [gr.update(choices=names), gr.update(choices=names), gr.update(choices=names)]

    def on_load(self):
        newest = {kind: next(iter(self.evals.list_jobs(kind)), None) for kind in ("benchmark", "judge")}
        return [(newest[k] or {}).get("id") for k in ("benchmark", "judge")]

    @on_refusal_raise()
    def on_benchmark(self, tasks, models, fewshot, limit):
        request = {
            "tasks": [line.strip() for line in (tasks or "").splitlines() if line.strip()],
            "models": list(models or []),
            "num_fewshot": int(fewshot or 0),
            "limit": int(limit or 0) or None,
        }
        job = self.ctx.act("evaluate", lambda person: self.evals.benchmark_start(request, owner=person.name))
        return job, progress_text(self.evals.status(job)), empty_table("empty.benchmark"), None

    @on_refusal_raise()
    def on_judge(self, a, b, dataset, limit, url, model, key):
        request = {
            "models": [a or "base", b or ""],
            "dataset": (dataset or "").strip() or None,
            "limit": int(limit),
            "judge": {"base_url": (url or "").strip(), "model": (model or "").strip(), "api_key": key or ""},
        }
        job = self.ctx.act("evaluate", lambda person: self.evals.judge_start(request, owner=person.name))
        return job, progress_text(self.evals.status(job)), "", empty_table("empty.judge"), None

    @on_refusal_raise()
    def on_abort(self, job):
        if job:
            self.ctx.act("evaluate", lambda person: self.evals.abort(job))

    @on_refusal_raise()
    def on_resume(self, job, key=""):
        """Go on with an aborted, interrupted or failed job (a judge's: with the key given again); its status line."""
        if not job:
            return gr.update(), gr.update()
        self.ctx.act("evaluate", lambda person: self.evals.resume(job, key or ""))
        return progress_text(self.evals.status(job)), None

    def on_tick(self, bench, judge):
        out = [gr.update(), gr.update(), gr.update(), gr.update(), gr.update()]
        try:
            if bench:
                status = self.evals.status(bench)
                out[0] = progress_text(status)
                out[1] = benchmark_table(status["results"], status["request"]["models"])
            if judge:
                status = self.evals.status(judge)
                out[2], out[3], out[4] = progress_text(status), win_rate_text(status), judge_rows(status)
        except TuneForgeError:  # its folder was removed: leave what the page shows
            pass
        return out
