"""Did tuning help, or hurt? Benchmarks through lm-evaluation-harness itself, and a judge model on loopback.

On the tiny 320-token model and a two-step LoRA run of it: the numbers mean nothing, the plumbing is the
point. Our benchmark job's numbers are checked against lm-eval's own simple_evaluate on the same model,
adapter and files (a local task YAML, an MMLU folder, a C-Eval folder), after an abort and a resume.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from backend.errors import TuneForgeError
from backend.evaluation.bench_run import read_samples
from backend.evaluation.bench_tasks import import_lm_eval, task_configs
from backend.evaluation.eval_jobs import EvalJobs
from backend.evaluation.judge import NO_DECISION, b_score, read_verdict, wilson
from backend.events import end_event, read_events
from backend.runs.compare import final_metrics
from backend.runs.job_manager import JobManager
from backend.serving.servers import Servers
from tests.helpers import DATA, ROOT, train_in_process

BENCH = DATA / "benchmarks"
QUICK = {"max_steps": 2, "cutoff_len": 256, "learning_rate": 1e-2, "save_steps": 0, "val_size": 0.25}
TASKS = [str(BENCH / "colours" / "colours.yaml"), str(BENCH / "mmlu_mini"), str(BENCH / "ceval_mini")]


@pytest.fixture(scope="module")
def tuned(tmp_path_factory, small_model, secret_dataset):
    """(EvalJobs, run id) of a two-step LoRA run of the tiny model."""
    jobs = JobManager(tmp_path_factory.mktemp("bench") / "workspace")
    run_id = train_in_process(jobs, {"model": small_model, "dataset": str(secret_dataset), **QUICK})
    yield EvalJobs(jobs), run_id
    jobs.shutdown()


def wait_for(condition, timeout=300.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if found := condition():
            return found
        time.sleep(0.1)
    raise AssertionError("timed out")


def lm_eval_itself(model_args: dict, tasks: list[dict], num_fewshot: int, limit: int) -> dict:
    """{(task alias, metric): (value, stderr, n)} from lm-eval's own simple_evaluate."""
    import_lm_eval()  # as the app does: the warm job server must not see the environment change
    from lm_eval import simple_evaluate
    from lm_eval.models.huggingface import HFLM
    from lm_eval.tasks import TaskManager

    lm = HFLM(device="cpu", batch_size=1, dtype="float32", **model_args)
    out = simple_evaluate(
        model=lm, tasks=tasks, task_manager=TaskManager(include_defaults=False), num_fewshot=num_fewshot, limit=limit
    )
    table = {}
    for task, metrics in out["results"].items():
        for metric in ("acc", "acc_norm"):
            if f"{metric},none" in metrics:
                n = out["n-samples"][task]["effective"]
                table[(metrics["alias"], metric)] = (metrics[f"{metric},none"], metrics[f"{metric}_stderr,none"], n)
    return table


def reference_tasks(monkeypatch) -> list[dict]:
    """The same files as lm-eval's own configs would read them: the YAML as its CLI loads it (from its folder,
    where its relative data file is), and lm-eval's own MMLU and C-Eval templates pointed at the CSVs."""
    import lm_eval
    from lm_eval.tasks._yaml_loader import load_yaml

    monkeypatch.chdir(BENCH / "colours")
    colours = load_yaml(BENCH / "colours" / "colours.yaml")
    shipped = Path(lm_eval.__file__).parent / "tasks"
    mmlu = load_yaml(shipped / "mmlu" / "default" / "_default_template_yaml")
    tasks = [colours]
    for subject in ("fruit", "weather"):
        files = {"test": str(BENCH / "mmlu_mini" / "test" / f"{subject}_test.csv")}
        if subject == "fruit":
            files["dev"] = str(BENCH / "mmlu_mini" / "dev" / f"{subject}_dev.csv")
        config = {**mmlu, "task": f"ref_{subject}", "task_alias": f"mmlu_mini/{subject}"}
        config.update(
            dataset_path="csv",
            dataset_kwargs={"data_files": files, "column_names": ["question", "A", "B", "C", "D", "answer"]},
            description=f"The following are multiple choice questions (with answers) about {subject}.\n\n",
            doc_to_text="{{question.strip()}}\nA. {{A}}\nB. {{B}}\nC. {{C}}\nD. {{D}}\nAnswer:",
            doc_to_target="{{['A', 'B', 'C', 'D'].index(answer)}}",
        )
        if "dev" not in files:
            config.pop("fewshot_split"), config.pop("fewshot_config")
        tasks.append(config)
    ceval = load_yaml(shipped / "ceval" / "_default_ceval_yaml")
    folder = BENCH / "ceval_mini"
    ceval.update(
        task="ref_ceval",
        task_alias="ceval_mini/chinese_food",
        dataset_path="csv",
        dataset_kwargs={
            "data_files": {
                "val": str(folder / "val" / "chinese_food_val.csv"),
                "dev": str(folder / "dev" / "chinese_food_dev.csv"),
            }
        },
        description="以下是中国关于chinese food考试的单项选择题，请选出其中的正确答案。\n\n",
    )
    return [*tasks, ceval]


def test_benchmark_base_against_a_run_aborted_resumed_and_as_lm_eval_scores_it(tuned, small_model, monkeypatch):
    evals, run_id = tuned
    request = {"tasks": TASKS, "models": ["base", run_id], "num_fewshot": 1, "limit": 4, "batch_size": 1}
    job = evals.benchmark_start(request)
    folder = evals.folder(job)
    wait_for(lambda: any(e["type"] == "model_done" for e in read_events(folder)))
    evals.abort(job)
    aborted = evals.status(job, "benchmark")
    assert aborted["status"] == "aborted" and {r["model"] for r in aborted["results"]} == {"base"}

    evals.resume(job)
    done = evals.wait(job)
    assert done["status"] == "completed", done["error"]
    # the base model was scored once: the resumed job read its rows back instead of asking the model again
    assert [e["model"] for e in read_events(folder) if e["type"] == "model_done"] == ["base", run_id]
    rows = {(r["model"], r["task"], r["metric"]): r for r in done["results"]}
    tasks = {task for _, task, _ in rows}
    assert tasks == {"colours", "mmlu_mini/fruit", "mmlu_mini/weather", "ceval_mini/chinese_food"}

    # each question's answer is kept per model, and they add up to the table; the run's adapter was applied:
    # every question's log-likelihoods moved off the base's (a run scored as its base would not move them)
    kept = {model: read_samples(folder, model) for model in ("base", run_id)}
    for (model, task, metric), row in rows.items():
        scores = [answer[metric] for (name, _), answer in kept[model].items() if name == task]
        assert len(scores) == row["n"] and sum(scores) / len(scores) == pytest.approx(row["value"], abs=1e-9)
    assert kept["base"].keys() == kept[run_id].keys()
    assert all(kept["base"][k]["responses"] != kept[run_id][k]["responses"] for k in kept["base"])

    run_dir = str(evals.jobs.run_dir(run_id))
    references = reference_tasks(monkeypatch)
    for model, args in (
        ("base", {"pretrained": small_model}),
        (run_id, {"pretrained": small_model, "peft": run_dir, "tokenizer": run_dir}),
    ):
        theirs = lm_eval_itself(args, references, num_fewshot=1, limit=4)
        for (task, metric), (value, stderr, n) in theirs.items():
            ours = rows[(model, task, metric)]
            assert ours["value"] == pytest.approx(value, abs=1e-9), (model, task, metric)
            assert ours["stderr"] == pytest.approx(stderr, abs=1e-9) and ours["n"] == n
        assert ("colours", "acc_norm") in theirs
    # kept with the run, where the Runs tab's compare reads it
    kept = json.loads((Path(run_dir) / "benchmarks" / f"{job}.json").read_text())
    assert {r["model"] for r in kept["rows"]} == {run_id} and len(kept["rows"]) == len(rows) // 2
    compared = {r["metric"]: r[run_id] for r in final_metrics(evals.jobs, [run_id])}
    assert compared["mmlu_mini/fruit acc"] == pytest.approx(rows[(run_id, "mmlu_mini/fruit", "acc")]["value"], abs=1e-4)


def test_a_benchmark_waits_for_training_and_training_waits_for_it_and_the_tab_resumes_a_queued_one(
    tuned, small_model, secret_dataset
):
    from webui.context import AppContext
    from webui.eval_jobs_view import EvalJobsView

    evals, _ = tuned
    jobs, view = evals.jobs, EvalJobsView(AppContext(jobs=evals.jobs, chat=None, blocks=None), evals)
    training = {"model": small_model, "dataset": str(secret_dataset), **QUICK, "val_size": 0}
    # The line's numbers below assume it is empty: the last test's job wrote its end but may still be exiting.
    wait_for(lambda: not jobs.busy(), timeout=60)
    long = jobs.start({**training, "max_steps": 100_000})  # runs until aborted below
    try:
        check_the_line(evals, jobs, view, long, training)
    except BaseException:
        jobs.abort(long)  # a failed check must not leave it holding the line for the module's next tests
        raise


def check_the_line(evals, jobs, view, long, training):
    request = {"tasks": [TASKS[0]], "models": ["base"], "limit": 2, "batch_size": 1}
    bench, dropped = evals.benchmark_start(request), evals.benchmark_start(request)
    after = jobs.start({**training, "max_steps": 1})
    assert [evals.status(j)["status"] for j in (bench, dropped)] == ["queued", "queued"]
    assert [evals.status(bench)["queue_position"], jobs.status(after)["queue_position"]] == [1, 3]

    evals.abort(dropped)  # off the line before it started
    assert evals.status(dropped)["status"] == "aborted" and jobs.status(after)["queue_position"] == 2
    line, _ = view.on_resume(dropped)  # the Evaluate tab's Resume: back in the line, last (and its view redrawn)
    assert evals.status(dropped)["queue_position"] == 3 and "queued, #3 in line" in line
    view.on_abort(dropped)
    assert evals.status(dropped)["status"] == "aborted"
    assert not any(e["type"] == "start" for e in read_events(evals.folder(dropped)))

    jobs.abort(long)
    wait_for(lambda: evals.status(bench)["status"] != "queued")
    assert jobs.status(after)["status"] == "queued"  # the run started while training waits for the benchmark
    assert evals.wait(bench)["status"] == "completed"
    wait_for(lambda: jobs.status(after)["status"] == "completed", timeout=300)

    def span(events):  # from the job's own start to its end: never two at once
        return next(e["time"] for e in events if e["type"] == "start"), end_event(events)["time"]

    trained, benchmarked = end_event(jobs.events(long))["time"], span(read_events(evals.folder(bench)))
    assert trained <= benchmarked[0] and benchmarked[1] <= span(jobs.events(after))[0]


def test_reading_a_task_leaves_the_apps_environment_as_it_was(tmp_path):
    """lm_eval's import sets HF_XET_HIGH_PERFORMANCE; in the app, the warm job server would see the changed
    environment and start again before the next run. A new Python: this worker may have imported lm_eval."""
    script = (
        "import os; from pathlib import Path; from backend.evaluation.bench_tasks import task_configs; "
        f"task_configs({str(TASKS[0])!r}, Path({str(tmp_path)!r})); "
        "import lm_eval; "  # the check imported it, so this sets nothing again
        "print(os.environ.get('HF_XET_HIGH_PERFORMANCE'))"
    )
    env = {k: v for k, v in os.environ.items() if k != "HF_XET_HIGH_PERFORMANCE"}
    out = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0 and out.stdout.strip() == "None", out.stderr[-2000:]


def test_bad_benchmark_requests_are_refused_in_one_line_before_a_job_starts(tuned, tmp_path):
    evals, run_id = tuned
    remote = tmp_path / "remote.yaml"
    remote.write_text("task: hub\ndataset_path: cais/mmlu\ndoc_to_text: '{{question}}'\n")
    code = tmp_path / "code.yaml"
    code.write_text("task: code\ndataset_path: json\nprocess_docs: !function utils.process\ndoc_to_text: x\n")
    before = set(evals.root.iterdir())
    bad_answer = tmp_path / "bad" / "test"
    bad_answer.mkdir(parents=True)
    (bad_answer / "maths_test.csv").write_text("1+1?,2,3,4,5,E\n")
    for request, message in (
        ({"tasks": [str(remote)], "models": ["base"]}, "remote.yaml: dataset_path 'cais/mmlu' is not a local file"),
        ({"tasks": [str(code)], "models": ["base"]}, "code.yaml: uses !function"),
        ({"tasks": [str(tmp_path / "bad")], "models": ["base"]}, "test/maths_test.csv line 1: answer must be A-D"),
        ({"tasks": [str(tmp_path / "nope")], "models": ["base"]}, "no such file or folder"),
        ({"tasks": TASKS, "models": ["base", "no-such-run"]}, "no run named 'no-such-run'"),
        ({"tasks": TASKS, "models": ["base"], "limit": -1}, "limit must be a whole number"),
        ({"tasks": TASKS, "models": ["base"], "shots": 5}, "unknown key(s) shots"),
    ):
        with pytest.raises(TuneForgeError, match=message.replace("(", r"\(").replace(")", r"\)")) as refused:
            evals.benchmark_start(request)
        assert "\n" not in str(refused.value)
    assert set(evals.root.iterdir()) == before


def test_cmmlu_layout_is_read_with_its_header(tmp_path):
    folder = tmp_path / "cmmlu_mini"
    (folder / "test").mkdir(parents=True)
    (folder / "test" / "history.csv").write_text(",Question,A,B,C,D,Answer\n0,长城在哪个国家？,中国,法国,日本,美国,A\n")
    (config,) = task_configs(folder, tmp_path / "work")
    assert config["task_alias"] == "cmmlu_mini/history" and config["doc_to_text"].endswith("答案：")
    row = json.loads(Path(config["dataset_kwargs"]["data_files"]["test"]).read_text())
    assert row == {"question": "长城在哪个国家？", "A": "中国", "B": "法国", "C": "日本", "D": "美国", "answer": "A"}


def test_the_judge_reads_verdicts_tolerantly_and_counts_both_orders():
    assert read_verdict("Answer 2 is clearer.\nVerdict: 2") == "2"
    assert read_verdict("**Verdict:** tie") == "tie"
    assert read_verdict("verdict: 1 ... no wait, Verdict: B") == "2"  # the last one counts
    assert read_verdict("I like both!!") is None and read_verdict("") is None
    assert b_score("2", "1") == 1.0 and b_score("2", "2") == 0.5 and b_score(None, "tie") == 0.5
    assert b_score(None, None) is None
    low, high = wilson(8, 10)
    assert low == pytest.approx(0.4902, abs=1e-4) and high == pytest.approx(0.9433, abs=1e-4)


def test_a_run_served_here_judges_base_against_the_run_and_a_bad_endpoint_fails_first(tuned):
    evals, run_id = tuned
    servers = Servers(evals.jobs)
    url = servers.start(run_id, api_key="sk-judge-secret")
    try:
        before = set(evals.root.iterdir())
        for endpoint, message in (
            ({"base_url": url, "model": run_id, "api_key": "sk-wrong"}, "answered 401"),
            ({"base_url": "http://127.0.0.1:9/v1", "model": run_id}, "unreachable"),
            ({"base_url": url, "model": "gpt-4o", "api_key": "sk-judge-secret"}, "answered 404"),
        ):
            with pytest.raises(TuneForgeError, match=message) as refused:
                evals.judge_start({"models": ["base", run_id], "limit": 2, "judge": endpoint})
            assert "\n" not in str(refused.value)
        assert set(evals.root.iterdir()) == before  # refused before any answer was generated

        judge = {"base_url": url, "model": run_id, "api_key": "sk-judge-secret"}
        job = evals.judge_start({"models": ["base", run_id], "limit": 2, "max_new_tokens": 8, "judge": judge})
        done = evals.wait(job)
        assert done["status"] == "completed", done["error"]
        assert len(done["rows"]) == 2 and all(set(r) >= {"prompt", "a", "b", "verdict", "reason"} for r in done["rows"])
        # a tiny random judge answers nonsense: that is "no decision", not a crash, and no win rate without verdicts
        decided = [r for r in done["rows"] if r["verdict"] != NO_DECISION]
        assert (done["win_rate"] is None) == (not decided) and (done["ci"] is None) == (not decided)
        for name in ("spec.json", "events.jsonl", "job.log", "result.json"):
            assert "sk-judge-secret" not in (evals.folder(job) / name).read_text()
    finally:
        servers.shutdown()


def test_the_cli_refuses_a_bad_config_in_one_line(tmp_path):
    config = tmp_path / "bench.yaml"
    config.write_text(f"benchmark: {{tasks: [{tmp_path / 'nowhere'}], models: [base]}}\n")
    for args, message in (
        (["--config", str(config)], "error: benchmark task"),
        (["--config", str(tmp_path / "missing.yaml")], "error: "),
        (["--resume", "no-such-job"], "error: no benchmark or judge job named 'no-such-job'"),
    ):
        result = subprocess.run(
            [sys.executable, "-m", "backend.evaluate", "--workspace", str(tmp_path / "ws"), *args],
            cwd=ROOT, capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        assert result.returncode == 2 and result.stderr.strip().startswith(message), result.stderr
        assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1
