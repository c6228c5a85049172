"""Sweeps: a search space refused before any trial, trials that run as ordinary runs, pruning, abort,
and a sweep whose driver was killed taken up again by the next one (as a restarted app does)."""

import json
import subprocess
import sys

import pytest
import yaml
from gradio_client import Client

from backend.errors import TuneForgeError
from backend.events import read_events
from backend.runs.job_manager import JobManager
from backend.sweeps.sweep_manager import SweepManager
from backend.sweeps.sweep_spec import parse_spec
from tests.helpers import ROOT, is_live, start_app, stop_app, wait_for

BASE = {"dataset": "demo_identity", "max_steps": 30, "eval_steps": 3, "logging_steps": 3, "val_size": 0.2}


def tiny_base(small_model: str, **options) -> dict:
    # Full fine-tuning: the tiny model's loss falls within a few steps at a learning rate of 3e-3 and
    # stays at its start (ln of the vocabulary) at 1e-8, the trial made worse on purpose.
    return {**BASE, "model": small_model, "method": "full", **options}


def wait_sweep(sweeps: SweepManager, sweep_id: str, timeout: float = 300) -> dict:
    wait_for(lambda: sweeps.status(sweep_id)["status"] != "running", timeout)
    return sweeps.status(sweep_id)


@pytest.mark.parametrize(
    "spec, message",
    [
        ({"space": {"lerning_rate": [1e-4]}}, "space: unknown option 'lerning_rate' (did you mean 'learning_rate'?)"),
        ({"space": {"learning_rate": []}}, "space.learning_rate: an empty list of values"),
        ({"space": {"learning_rate": [1e-4, 5.0]}}, "learning_rate=5.0 is out of range [1e-08, 1.0]"),
        ({"space": {"lora_rank": {"low": 8, "high": 8}}, "sampler": "tpe"}, "space.lora_rank: an empty range"),
        ({"space": {"lora_rank": {"low": 0, "high": 8}}, "sampler": "tpe"}, "lora_rank=0 is out of range [1, 1024]"),
        ({"space": {"learning_rate": {"low": 1e-5, "high": 1e-3}}}, "the grid sampler needs a list of values"),
        ({"space": {"lora_target": {"low": 1, "high": 2}}, "sampler": "tpe"}, "a range needs a numeric option"),
        ({"space": {"lora_rank": {"low": 4, "hi": 8}}, "sampler": "tpe"}, "unknown range key 'hi'"),
        ({"space": {"warmup_ratio": {"low": 0.0, "high": 0.1, "log": True}}, "sampler": "tpe"}, "needs low > 0"),
        ({"space": {"method": ["lora", "lora"]}}, "space.method: a value is listed twice"),
        ({"space": {"method": ["lora", "dora"]}}, "method='dora' is not one of: lora, qlora, full, freeze"),
        ({"space": {"task": ["sft", "dpo"]}}, "space: task cannot be searched"),
        ({"space": {"output_dir": ["a", "b"]}}, "space: output_dir cannot be searched"),
        ({"space": {}}, "space: name at least one option to search"),
        ({"space": {"use_dora": [True, False], "pissa_init": [True]}}, "pissa_init and use_dora cannot be combined"),
        ({"space": {"lora_rank": [4]}, "metric": "accuracy"}, "metric: task sft runs report eval_loss; not 'accuracy'"),
        ({"space": {"lora_rank": [4]}, "base": {"val_size": 0}}, "metric: eval_loss is measured on a validation set"),
        ({"space": {"lora_rank": [4]}, "base": {"lora_rank": "big"}}, "base: lora_rank must be a whole number"),
        ({"space": {"lora_rank": [4]}, "sampler": "bayes"}, "sampler: 'bayes' is not one of grid, random, tpe"),
        ({"space": {"lora_rank": [4]}, "n_trials": 0, "sampler": "tpe"}, "n_trials: a whole number from 1"),
        ({"space": {"lora_rank": [4]}, "trials": 3}, "unknown sweep key 'trials' (did you mean 'n_trials'?)"),
        ({"space": {"lora_rank": [4]}, "name": "../x"}, "name: '../x' is not a sweep name"),
        ({"space": {"lora_rank": [4]}, "pruner_margin": 2}, "pruner_margin: a number from 0 to 1, got 2"),
    ],
)
def test_a_bad_search_space_is_refused_in_one_line_naming_it(spec, message):
    with pytest.raises(TuneForgeError) as refused:
        parse_spec({"sampler": "grid", **spec})
    assert message in str(refused.value) and "\n" not in str(refused.value)


def test_a_spec_fills_its_defaults_from_the_task():
    space = {"learning_rate": [1e-4, 1e-3], "lora_rank": [4, 8]}
    spec = parse_spec(
        {"base": {"task": "classification"}, "space": space, "sampler": "grid", "metric": "eval_accuracy"}
    )
    assert (spec.metric, spec.direction, spec.n_trials) == ("accuracy", "maximize", 4)
    assert spec.grid()[1] == {"learning_rate": 1e-4, "lora_rank": 8}  # the order written, first option slowest
    ranged = parse_spec({"space": {"learning_rate": {"low": 1e-5, "high": 1e-3, "log": True}}, "sampler": "tpe"})
    assert (ranged.direction, ranged.n_trials) == ("minimize", 8)
    # tpe or random over lists of fewer combinations than 8 runs each once by default, not some twice
    assert parse_spec({"space": space, "sampler": "tpe"}).n_trials == 4
    assert parse_spec({"space": space, "sampler": "random", "n_trials": 6}).n_trials == 6  # as given
    assert parse_spec({"space": {**space, "lora_dropout": [0.0, 0.1, 0.2]}, "sampler": "tpe"}).n_trials == 8


def test_a_model_or_dataset_the_sweep_would_try_is_refused_before_any_trial(workspace, small_model):
    sweeps = SweepManager(JobManager(workspace))
    with pytest.raises(TuneForgeError, match="space.dataset: .*no_such_data"):
        sweeps.start({"base": tiny_base(small_model), "space": {"dataset": ["demo_identity", "no_such_data"]}})
    with pytest.raises(TuneForgeError, match="base: output_dir is not for a sweep"):
        sweeps.start({"base": tiny_base(small_model, output_dir="mine"), "space": {"learning_rate": [1e-3]}})
    assert sweeps.sweep_ids() == [] and not list((workspace / "runs").iterdir())


def test_a_grid_sweep_runs_its_trials_as_runs_prunes_the_worse_one_and_marks_the_best(workspace, small_model):
    jobs = JobManager(workspace)
    sweeps = SweepManager(jobs)
    sweep_id = sweeps.start({"base": tiny_base(small_model), "space": {"learning_rate": [3e-3, 1e-8]},
                             "sampler": "grid", "pruner_startup_trials": 1})  # fmt: skip
    report = wait_sweep(sweeps, sweep_id)

    assert report["status"] == "completed", report
    good, worse = report["trials"]
    assert (good["params"], good["status"]) == ({"learning_rate": 3e-3}, "completed")
    assert (worse["params"], worse["status"]) == ({"learning_rate": 1e-8}, "pruned")
    assert report["best"] == {"run_id": good["run_id"], "params": {"learning_rate": 3e-3}, "value": good["value"]}
    # The trials are ordinary runs, tagged with the sweep; the pruned one stopped early, and says why.
    runs = {r["run_id"]: r for r in jobs.list_runs()}
    assert runs[good["run_id"]]["status"] == "completed" and runs[good["run_id"]]["step"] == 30
    assert good["value"] == pytest.approx(runs[good["run_id"]]["eval_loss"])
    pruned = runs[worse["run_id"]]
    assert pruned["status"] == "aborted" and pruned["step"] < 30, pruned
    assert pruned["error"].startswith(f"pruned by sweep {sweep_id}: eval_loss")
    assert runs[worse["run_id"]]["sweep"] == f"{sweep_id} #1"
    assert yaml.safe_load((workspace / "runs" / worse["run_id"] / "config.yaml").read_text())["learning_rate"] == 1e-8
    assert sweeps.list_sweeps() == [
        {"sweep_id": sweep_id, "status": "completed", "trials": "2/2", "metric": "eval_loss", "best": good["value"]}
    ]
    figures = sweeps.figures(sweep_id)
    assert figures["history"] is not None and figures["parallel"] is not None
    assert figures["importance"] is None  # one completed trial: nothing to rank yet


def test_a_trial_worse_only_by_a_hair_is_not_pruned(workspace, small_model):
    jobs = JobManager(workspace)
    sweeps = SweepManager(jobs)
    sweep_id = sweeps.start({"base": tiny_base(small_model, max_steps=9), "space": {"learning_rate": [3e-3, 2.97e-3]},
                             "sampler": "grid", "pruner_startup_trials": 1})  # fmt: skip
    report = wait_sweep(sweeps, sweep_id)

    assert [t["status"] for t in report["trials"]] == ["completed", "completed"], report
    evals = [[e for e in jobs.events(t["run_id"]) if e["type"] == "eval"] for t in report["trials"]]
    at_3 = [next(e["eval_loss"] for e in events if e["step"] == 3) for events in evals]
    assert at_3[0] < at_3[1] < at_3[0] * 1.01  # worse, which Optuna's median pruner alone would have stopped


def test_abort_stops_the_running_trial_and_starts_no_more(workspace, small_model):
    jobs = JobManager(workspace)
    sweeps = SweepManager(jobs)
    base = tiny_base(small_model, max_steps=10_000, method="lora")
    sweep_id = sweeps.start({"base": base, "space": {"lora_rank": [2, 4, 8]}, "sampler": "grid"})
    first = wait_for(lambda: (t := sweeps.status(sweep_id)["trials"][0])["status"] == "running" and t["step"] > 0 and t)
    sweeps.abort(sweep_id)

    report = sweeps.status(sweep_id)
    assert report["status"] == "aborted"
    assert [t["status"] for t in report["trials"]] == ["aborted", "aborted", "aborted"]
    assert [t["run_id"] for t in report["trials"]][1:] == [None, None]  # never started
    run = jobs.status(first["run_id"])
    assert run["status"] == "aborted" and run["error"] == f"the sweep {sweep_id} was aborted"
    assert not jobs.training() and len(jobs.list_runs()) == 1


def test_a_sweep_whose_app_was_killed_is_taken_up_by_the_restarted_app_and_finishes(workspace, small_model, tmp_path):
    """Through the API: the app drives the sweep and is killed mid-trial; the trial's job trains on, and the
    restarted app follows that run to its end, then runs the rest. The CLI, given the sweep's name, then
    finds nothing left to do."""
    spec = {"base": tiny_base(small_model, max_steps=20, eval_steps=10, method="lora"), "space": {"lora_rank": [2, 4]},
            "sampler": "grid", "pruner": "none", "name": "killed-and-taken-up"}  # fmt: skip
    proc, url = start_app(workspace)
    try:
        client = Client(url, verbose=False)
        with pytest.raises(Exception, match=r"space: unknown option 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
            client.predict({**spec, "space": {"lerning_rate": [1e-3]}}, api_name="/sweep_start")
        assert client.predict(spec, api_name="/sweep_start") == "killed-and-taken-up"
        status = lambda: client.predict("killed-and-taken-up", api_name="/sweep_status")  # noqa: E731
        run_id = wait_for(lambda: status()["trials"][0]["run_id"])
        run_dir = workspace / "runs" / run_id
        wait_for(lambda: any(e["type"] == "log" for e in read_events(run_dir)), 120)  # training, not loading
    finally:
        proc.kill()  # the whole app is gone, its sweep's driver thread with it
        proc.wait()
    job_pid = next(e["pid"] for e in read_events(run_dir) if e["type"] == "start")
    assert is_live(job_pid)  # the trial trains on

    proc, url = start_app(workspace, warm_jobs=True)
    try:
        client = Client(url, verbose=False)
        report = wait_for(
            lambda: (s := client.predict("killed-and-taken-up", api_name="/sweep_status"))["status"] != "running" and s
        )
        assert report["status"] == "completed", report
        assert [(t["status"], t["params"]) for t in report["trials"]] == [
            ("completed", {"lora_rank": 2}),
            ("completed", {"lora_rank": 4}),
        ]
        assert report["trials"][0]["run_id"] == run_id and all(t["value"] > 0 for t in report["trials"])
        assert sum(e["type"] == "start" for e in read_events(run_dir)) == 1  # followed, not started again
        best = min(report["trials"], key=lambda t: t["value"])
        assert report["best"] == {"run_id": best["run_id"], "params": best["params"], "value": best["value"]}
        assert client.predict(run_id, api_name="/train_status")["sweep"] == "killed-and-taken-up #0"
        assert client.predict(api_name="/sweeps_list")[0]["trials"] == "2/2"
        with pytest.raises(Exception, match=r"no sweep named 'nope'"):
            client.predict("nope", api_name="/sweep_abort")
    finally:
        stop_app(proc)

    config = tmp_path / "sweep.yaml"
    config.write_text(yaml.safe_dump(spec))
    cli = subprocess.run(
        [sys.executable, "-m", "backend.sweep", "--config", str(config), "--workspace", str(workspace)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert cli.returncode == 0, cli.stderr
    printed = cli.stdout
    assert json.loads(printed[printed.index("{") :])["best"] == report["best"]
    assert len(list((workspace / "runs").iterdir())) == 2  # no trial ran again


def test_a_sweep_of_a_name_already_stored_joins_it_and_another_spec_is_refused(workspace, small_model, tmp_path):
    """Two machines on one --optuna-storage, as two managers of one storage URL."""
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    spec = {"base": tiny_base(small_model), "space": {"lora_rank": [2, 4]}, "sampler": "grid", "name": "shared"}
    first = SweepManager(JobManager(workspace), storage, resume=False)
    assert first.create(spec) == "shared"
    other = tmp_path / "other-workspace"
    other.mkdir()
    second = SweepManager(JobManager(other), storage, resume=False)
    assert second.create(spec) == "shared"
    assert len(second.status("shared")["trials"]) == 2  # the grid, enqueued once for both
    with pytest.raises(TuneForgeError, match="sweep shared already exists with another spec"):
        second.create({**spec, "space": {"lora_rank": [8]}})
    with pytest.raises(TuneForgeError, match="no sweep named 'nope'"):
        second.status("nope")


def test_the_cli_refuses_a_bad_spec_in_one_line_before_any_trial(workspace, tmp_path, capsys):
    from backend.sweep import main

    config = tmp_path / "sweep.yaml"
    config.write_text(json.dumps({"space": {"learning_rate": [2.0]}}))
    assert main(["--config", str(config), "--workspace", str(workspace)]) == 2
    err = capsys.readouterr().err
    assert err == "error: space: learning_rate=2.0 is out of range [1e-08, 1.0]\n"
    assert not (workspace / "runs").exists() or not list((workspace / "runs").iterdir())
