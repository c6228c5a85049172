"""The named API endpoints people script against with gradio_client (train_start, train_status, chat, export, ...).

Their names and fields are a contract: extend them, never break them. Each goes through the gate as the
caller's login, as the page's own handlers do, and build_app (webui/app.py) registers them inside its Blocks.
"""

from __future__ import annotations

import gradio as gr

from backend.access.gate import Gate
from backend.access.limits import CHAT_DEFAULTS
from backend.evaluation.eval_jobs import EvalJobs
from backend.evaluation.evaluate import Evaluator
from backend.fit import model_report
from backend.recipes.jobs import RecipeJobs
from backend.serving.chat import ChatEngine
from backend.serving.export import GGUF_KINDS, Exporter, gguf_verification, zipped_folder
from backend.sweeps.sweep_manager import SweepManager
from webui.context import caller
from webui.edge import typed
from webui.lanes import DEVICE, JOBS, STATUS
from webui.refusals import on_refusal_raise
from webui.tab_recipes import start_recipe


def register_api(gate: Gate, chat: ChatEngine, evaluator: Evaluator, exporter: Exporter) -> None:
    """The stable endpoints for gradio_client; errors come back as one-line gr.Error messages.

    Each goes through the gate as the caller's login, as the page's own handlers do."""
    jobs = gate.jobs

    @on_refusal_raise(page=False)
    @typed(gate, "train_start")
    def train_start(config: dict) -> str:
        """Validate a config dict (TrainConfig keys) and start or queue a job; returns the run id."""
        return gate.start(caller(), config)

    @on_refusal_raise(page=False)
    @typed(gate, "train_status")
    def train_status(run_id: str) -> dict:
        """status (queued|running|completed|failed|aborted), step, max_steps, loss, eval_loss, error, ..."""
        return jobs.status(run_id)

    @on_refusal_raise(page=False)
    @typed(gate, "train_abort")
    def train_abort(run_id: str) -> None:
        """Stop a run's whole process tree; the run is marked aborted."""
        gate.abort(caller(), run_id)

    @on_refusal_raise(page=False)
    @typed(gate, "runs_list")
    def runs_list() -> list:
        """Every run in the workspace, newest first: status, step, loss, eval_loss, duration, queue position, ..."""
        return jobs.list_runs()

    @on_refusal_raise(page=False)
    @typed(gate, "train_resume")
    def train_resume(run_id: str, overrides: dict | None = None) -> str:
        """Continue an interrupted, failed or aborted run from its last whole checkpoint (queued like a start)."""
        return gate.resume(caller(), run_id, overrides or None)

    @on_refusal_raise("No memory estimate", page=False)
    @typed(gate, "model_info")
    def model_info(config: dict | None = None) -> dict:
        """A config dict (TrainConfig keys; {} for the defaults) → the model's architecture, parameters and
        sizes, and per method (lora, qlora, full, freeze) the memory a run needs here against free memory:
        `fit`, `run` (the config's own method) and `warning` (a line when that run may not fit)."""
        config = dict(config or {})
        jobs.confinement.model(str(config.get("model") or "default"))
        return model_report(config)

    @on_refusal_raise(page=False)
    @typed(gate, "chat")
    def chat_reply(
        target: str,
        message: str,
        history: list,
        system_prompt: str = "",
        temperature: float = CHAT_DEFAULTS["temperature"],
        top_p: float = CHAT_DEFAULTS["top_p"],
        max_new_tokens: int = CHAT_DEFAULTS["max_new_tokens"],
        images: list | None = None,
    ) -> str:
        """Reply from 'base' or a completed run id, given [{role, content}] history; the generation
        settings are the Chat tab's (temperature 0: always the likeliest token). images: paths of image
        files (uploads or the allowed folders) that the message shows a vision-language model."""
        settings = {"temperature": temperature, "top_p": top_p, "max_new_tokens": max_new_tokens, "images": images}
        return chat.reply(target, message, history, system_prompt=system_prompt, **settings)

    @on_refusal_raise(page=False)
    @typed(gate, "reward_score")
    def reward_score(run_id: str, message: str, reply: str, history: list | None = None) -> float:
        """A completed reward-model (task rm) run's score of `reply` as the answer to `message` after the
        [{role, content}] history: higher is preferred."""
        if not all(isinstance(text, str) for text in (run_id, message, reply)):
            raise gr.Error("run_id, message and reply must be text")
        return chat.score_reply(run_id, message, reply, history)

    @on_refusal_raise(page=False)
    @typed(gate, "evaluate")
    def evaluate(run_id: str, dataset: str = "") -> dict:
        """Metrics for a completed run (or 'base'): classification scores, a reward model's pairwise accuracy and
        margin (with base_accuracy and base_margin: its untrained head), or generation loss/perplexity/ROUGE/BLEU."""
        work = lambda person: evaluator.evaluate(run_id, dataset or None)  # noqa: E731
        return gate.act(caller(), "evaluate", work, run_id=run_id, options=gate.evaluation_data(run_id, dataset))

    @on_refusal_raise(page=False)
    @typed(gate, "export")
    def export(run_id: str, options: dict | None = None) -> dict:
        """Export a completed run. options: kind (merged|adapter|gguf|gguf_adapter), max_shard_size ('2GB'),
        gguf_type (f16|bf16|q8_0|q6_k|q5_k_m|q4_k_m, for gguf; default q8_0), and to push: repo_id, token,
        private (default true). Returns {folder, zip}, plus for gguf and gguf_adapter {gguf} (the .gguf file's
        path) and {verify} (what llama.cpp measured: agree of tokens, ppl, ppl_f16), {note} for a quantized
        base merged dequantized, and after a push {url}."""
        options = dict(options or {})
        kind, shard = options.pop("kind", "merged"), options.pop("max_shard_size", "2GB")
        gguf_type = options.pop("gguf_type", "q8_0")
        push = {k: options.pop(k) for k in ("repo_id", "token", "private") if k in options}
        if options:
            raise gr.Error(f"unknown export option(s): {', '.join(map(str, options))}")
        work = lambda person: exporter.zip(run_id, kind, shard, gguf_type)  # noqa: E731
        archive = gate.act(caller(), "export", work, run_id=run_id)
        folder = zipped_folder(archive, run_id)
        result = {"folder": str(folder), "zip": str(archive)}
        if kind in GGUF_KINDS:
            result["gguf"] = str(next(folder.glob("*.gguf")))
            result["verify"] = gguf_verification(folder)
        if note := exporter.note(run_id, kind):
            result["note"] = note
        if push:
            settings = (push.get("repo_id"), push.get("token"), push.get("private", True), kind, gguf_type)
            work = lambda person: exporter.push(run_id, *settings)  # noqa: E731
            result["url"] = gate.act(caller(), "export_push", work, run_id=run_id)
        return result

    gr.api(evaluate, api_name="evaluate", **DEVICE)
    gr.api(export, api_name="export", **DEVICE)
    gr.api(chat_reply, api_name="chat", **DEVICE)
    gr.api(reward_score, api_name="reward_score", **DEVICE)
    gr.api(train_start, api_name="train_start", **JOBS)
    gr.api(train_abort, api_name="train_abort", **JOBS)
    gr.api(train_resume, api_name="train_resume", **JOBS)
    gr.api(train_status, api_name="train_status", **STATUS)
    gr.api(runs_list, api_name="runs_list", **STATUS)
    gr.api(model_info, api_name="model_info")


def register_sweep_api(gate: Gate, sweeps: SweepManager) -> None:
    """Sweeps (backend.sweeps): the spec's keys are in backend/sweeps/sweep_spec.py and docs/sweeps.md."""

    @on_refusal_raise(page=False)
    @typed(gate, "sweep_start")
    def sweep_start(spec: dict) -> str:
        """A spec dict (base, space, sampler, n_trials, metric, direction, ...) → the sweep's id; its trials queue
        one after another. A bad search space is refused before any trial starts."""
        return gate.start_sweep(caller(), sweeps, spec)

    @on_refusal_raise(page=False)
    @typed(gate, "sweep_status")
    def sweep_status(sweep_id: str) -> dict:
        """status (running|completed|aborted|failed), trials [{run_id, params, status, value, ...}], best
        {run_id, params, value}, metric, direction, sampler, n_trials, space."""
        return sweeps.status(sweep_id)

    @on_refusal_raise(page=False)
    @typed(gate, "sweep_abort")
    def sweep_abort(sweep_id: str) -> None:
        """Abort the sweep's running trial and start no more; finished trials stay."""
        gate.abort_sweep(caller(), sweeps, sweep_id)

    @on_refusal_raise(page=False)
    @typed(gate, "sweeps_list")
    def sweeps_list() -> list:
        """Every sweep in the workspace's study storage, newest first: sweep_id, status, trials, metric, best."""
        return sweeps.list_sweeps()

    gr.api(sweep_start, api_name="sweep_start", **JOBS)
    gr.api(sweep_abort, api_name="sweep_abort", **JOBS)
    gr.api(sweep_status, api_name="sweep_status", **STATUS)
    gr.api(sweeps_list, api_name="sweeps_list", **STATUS)


def register_recipe_api(gate: Gate, recipes: RecipeJobs) -> None:
    """Data recipes (backend.recipes): documents into a named dataset; its spec's keys: docs/recipes.md, docs/api.md."""

    @on_refusal_raise(page=False)
    @typed(gate, "recipe_start")
    def recipe_start(spec: dict) -> str:
        """{"sources": [path, ...], "generator": {"base_url", "model", "api_key"} | {"run": run_id} | "base",
        "kind": "qa"|"instruction"|"summary"|"chat"|"preference", "chunk_tokens": n, "per_chunk": k,
        "name": dataset_name} (and any other recipe option) → the recipe's id. The same name with the same
        sources and settings goes on from the rows already made."""
        return start_recipe(gate, recipes, caller(), spec)

    @on_refusal_raise(page=False)
    @typed(gate, "recipe_status")
    def recipe_status(recipe_id: str) -> dict:
        """status (running|completed|failed|aborted|interrupted), rows, dataset (its name once saved),
        failed_calls, files [{path, chunks, error}], done, total, eta_s, retried_calls, saved_rows, error."""
        return recipes.status(recipe_id)

    @on_refusal_raise(page=False)
    @typed(gate, "recipe_abort")
    def recipe_abort(recipe_id: str) -> None:
        """Stop the recipe; the rows it made stay, and recipe_resume (or the same recipe_start) goes on from them."""
        gate.act(
            caller(), "recipe_abort", lambda person: recipes.abort(recipe_id), owner=lambda: recipes.owner(recipe_id)
        )

    @on_refusal_raise(page=False)
    @typed(gate, "recipe_resume")
    def recipe_resume(recipe_id: str, api_key: str = "") -> str:
        """Go on with an aborted, failed or interrupted recipe (an endpoint's key is given again: none is kept)."""
        work = lambda person: recipes.resume(recipe_id, api_key)  # noqa: E731
        return gate.act(caller(), "recipe_resume", work, owner=lambda: recipes.owner(recipe_id))

    gr.api(recipe_start, api_name="recipe_start", **JOBS)
    gr.api(recipe_abort, api_name="recipe_abort", **JOBS)
    gr.api(recipe_resume, api_name="recipe_resume", **JOBS)
    gr.api(recipe_status, api_name="recipe_status", **STATUS)


def register_eval_api(gate: Gate, evals: EvalJobs) -> None:
    """Benchmarks (lm-evaluation-harness) and the judge: background jobs (backend.evaluation.eval_jobs)."""

    @on_refusal_raise(page=False)
    @typed(gate, "benchmark_start")
    def benchmark_start(request: dict) -> str:
        """{"tasks": [path, ...], "models": ["base", run_id, ...], "num_fewshot": k, "limit": n} → benchmark_id.
        A task path is an lm-eval task YAML with local data, or an MMLU, C-Eval or CMMLU folder."""
        return gate.act(caller(), "evaluate", lambda p: evals.benchmark_start(request, owner=p.name))

    @on_refusal_raise(page=False)
    @typed(gate, "benchmark_status")
    def benchmark_status(benchmark_id: str) -> dict:
        """{"status", "results": [{"model", "task", "metric", "value", "stderr", "n"}, ...], "progress", "error"}."""
        return evals.status(benchmark_id, "benchmark")

    @on_refusal_raise(page=False)
    @typed(gate, "judge_start")
    def judge_start(request: dict) -> str:
        """{"models": [a, b], "dataset": path, "limit": n, "judge": {"base_url", "model", "api_key"}} → judge_id.
        The endpoint is checked first; the key is kept out of every file."""
        return gate.act(caller(), "evaluate", lambda p: evals.judge_start(request, owner=p.name))

    @on_refusal_raise(page=False)
    @typed(gate, "judge_status")
    def judge_status(judge_id: str) -> dict:
        """{"status", "win_rate" (b's against a's, null without a verdict), "ci": [low, high],
        "rows": [{"prompt", "a", "b", "verdict", "reason"}, ...], "progress", "error"}."""
        return evals.status(judge_id, "judge")

    @on_refusal_raise(page=False)
    @typed(gate, "evaluation_abort")
    def evaluation_abort(job_id: str) -> None:
        """Stop a benchmark or judge job; what it scored so far is kept for a resume."""
        gate.act(caller(), "evaluate", lambda p: evals.abort(job_id))

    @on_refusal_raise(page=False)
    @typed(gate, "evaluation_resume")
    def evaluation_resume(job_id: str, api_key: str = "") -> str:
        """Go on with an aborted, interrupted or failed benchmark or judge job (a judge's key again)."""
        return gate.act(caller(), "evaluate", lambda p: evals.resume(job_id, api_key))

    gr.api(benchmark_start, api_name="benchmark_start", **JOBS)
    gr.api(judge_start, api_name="judge_start", **JOBS)
    gr.api(evaluation_abort, api_name="evaluation_abort", **JOBS)
    gr.api(evaluation_resume, api_name="evaluation_resume", **JOBS)
    gr.api(benchmark_status, api_name="benchmark_status", **STATUS)
    gr.api(judge_status, api_name="judge_status", **STATUS)
