"""Inside a benchmark job: each model through lm-evaluation-harness, one table of rows at the end.

We run lm-eval rather than our own scorer so that the numbers are the ones people quote: its
HFLM wrapper (the run's adapter through `peft=`, a full run's weights as `pretrained=`), its
prompts, few-shot sampling, metrics and standard errors. Two things are added around it:
- progress: the log-likelihood requests are handed to HFLM in chunks, and an event follows each;
- abort and resume: every answered request goes into lm-eval's own request cache (a SQLite file
  per model in the job's folder), so a resumed job asks the model only what it had not yet asked;
- each question's answer, kept per model in samples/<model>.jsonl (its target, the log-likelihood of
  each choice, whether it was right): two models that pick the same letters can still be told apart.
A model that finished is not evaluated again; its rows are read back from the events.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from backend.cycle_collector import settle
from backend.events import EventLog, read_events
from backend.files import write_text_atomically

CHUNK = 32  # requests between progress events: a few seconds of a small model on a CPU
SCORE_METRICS = ("acc", "acc_norm", "exact_match")


def run_benchmark(spec: dict[str, Any], folder: Path, events: EventLog) -> list[dict[str, Any]]:
    """spec: tasks (lm-eval config dicts), models ([{name, pretrained, peft, tokenizer}]), num_fewshot, limit."""
    done = {e["model"]: e["rows"] for e in read_events(folder) if e["type"] == "model_done"}
    rows: list[dict[str, Any]] = []
    for index, model in enumerate(spec["models"]):
        if model["name"] in done:
            rows += done[model["name"]]
            continue
        stage = {"model": model["name"], "model_index": index, "models": len(spec["models"])}
        events.emit("progress", **stage, done=0, total=None)
        results = evaluate_model(model, spec, folder, _reporter(events, stage))
        keep_samples(folder, model["name"], results)
        model_rows = result_rows(model["name"], results)
        events.emit("model_done", model=model["name"], rows=model_rows)
        rows += model_rows
    return rows


def _reporter(events: EventLog, stage: dict[str, Any]):
    return lambda done, total: events.emit("progress", **stage, done=done, total=total)


def evaluate_model(model: dict[str, Any], spec: dict[str, Any], folder: Path, progress) -> dict[str, Any]:
    from lm_eval import simple_evaluate
    from lm_eval.tasks import TaskManager

    settle()  # lm-eval, torch and transformers are imported (backend.cycle_collector)

    lm = progress_lm(model, spec.get("batch_size", 8), progress)
    cache = folder / "cache" / _slug(model["name"])
    return simple_evaluate(
        model=lm,
        tasks=[dict(t) for t in spec["tasks"]],
        task_manager=TaskManager(include_defaults=False),  # indexing its ~10k built-in tasks costs 30 s
        num_fewshot=spec.get("num_fewshot"),
        limit=spec.get("limit") or None,
        use_cache=str(cache),
        log_samples=True,
        random_seed=0,
        numpy_random_seed=1234,
        torch_random_seed=1234,
        fewshot_random_seed=1234,
    )


def hflm_arguments(model: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """HFLM's keyword arguments for one of the spec's models (also what a test hands lm_eval itself)."""
    arguments = {"pretrained": model["pretrained"], "device": "cpu", "batch_size": batch_size, "dtype": "float32"}
    if model.get("peft"):
        arguments["peft"] = model["peft"]
    if model.get("tokenizer"):
        arguments["tokenizer"] = model["tokenizer"]
    return arguments


def progress_lm(model: dict[str, Any], batch_size: int, progress):
    from lm_eval.models.huggingface import HFLM

    from backend.models.head_input import read_contiguous_head_input

    class ProgressHFLM(HFLM):
        """HFLM that answers its requests a chunk at a time and reports after each chunk."""

        def _in_chunks(self, method, requests, **kwargs):
            answers = []
            for start in range(0, len(requests), CHUNK):
                answers += method(requests[start : start + CHUNK], **kwargs)
                progress(len(answers), len(requests))
            return answers

        def loglikelihood(self, requests, disable_tqdm: bool = True):
            return self._in_chunks(super().loglikelihood, requests, disable_tqdm=disable_tqdm)

        def loglikelihood_rolling(self, requests, disable_tqdm: bool = True):
            return self._in_chunks(super().loglikelihood_rolling, requests, disable_tqdm=disable_tqdm)

        def generate_until(self, requests, disable_tqdm: bool = True):
            return self._in_chunks(super().generate_until, requests, disable_tqdm=disable_tqdm)

    lm = ProgressHFLM(**hflm_arguments(model, batch_size))
    read_contiguous_head_input(lm.model)  # lm-eval loads the weights itself: its generate_until prefills too
    return lm


def result_rows(model: str, results: dict[str, Any]) -> list[dict[str, Any]]:
    """lm-eval's results as our rows: one per task and metric, with its stderr and the questions scored."""
    rows = []
    samples = results.get("n-samples", {})
    for task, metrics in results["results"].items():
        if task not in samples:  # a group's aggregate: its subjects have their own rows
            continue
        name = metrics.get("alias", task).strip(" -")
        for key, value in metrics.items():
            metric, _, _filter = key.partition(",")
            if metric not in SCORE_METRICS or not isinstance(value, (int, float)):
                continue
            stderr = metrics.get(f"{metric}_stderr,{_filter}")
            rows.append(
                {
                    "model": model,
                    "task": name,
                    "metric": metric,
                    "value": float(value),
                    "stderr": float(stderr) if isinstance(stderr, (int, float)) else None,
                    "n": int(samples[task]["effective"]),
                }
            )
    return rows


def samples_file(folder: Path, model: str) -> Path:
    return folder / "samples" / f"{_slug(model)}.jsonl"


def keep_samples(folder: Path, model: str, results: dict[str, Any]) -> None:
    """One line per question: task, doc_id, target, each choice's log-likelihood (or the generated text), acc."""
    lines = []
    for task, examples in results.get("samples", {}).items():
        alias = results["results"].get(task, {}).get("alias", task).strip(" -")
        for example in examples:
            answers = [r[0] if isinstance(r, (list, tuple)) else r for r in example["filtered_resps"]]
            line = {"task": alias, "doc_id": example["doc_id"], "target": example["target"], "responses": answers}
            line.update({k: example[k] for k in SCORE_METRICS if k in example})
            lines.append(json.dumps(line, ensure_ascii=False, default=str))
    target = samples_file(folder, model)
    target.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomically(target, "".join(f"{line}\n" for line in lines))


def read_samples(folder: Path, model: str) -> dict[tuple[str, int], dict[str, Any]]:
    """A model's kept answers by (task, doc_id); empty when it has none (a job from before they were kept)."""
    try:
        text = samples_file(folder, model).read_text(encoding="utf-8")
    except OSError:
        return {}
    rows = [json.loads(line) for line in text.splitlines() if line.strip()]
    return {(r["task"], r["doc_id"]): r for r in rows}


def keep_with_runs(spec: dict[str, Any], benchmark_id: str, rows: list[dict[str, Any]]) -> None:
    """Each run's own rows in its folder (benchmarks/<id>.json), where the Runs tab's compare reads them."""
    for model in spec["models"]:
        if not model.get("run_dir"):
            continue
        target = Path(model["run_dir"]) / "benchmarks" / f"{benchmark_id}.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        own = [r for r in rows if r["model"] == model["name"]]
        target.write_text(json.dumps({"benchmark_id": benchmark_id, "rows": own}, indent=1), encoding="utf-8")


def _slug(text: str) -> str:
    return re.sub(r"[^0-9A-Za-z_.-]+", "_", text)
