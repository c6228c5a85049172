"""No string from a browser or API caller makes the app read or write outside its folders.

Each field that ends up in a path gets the same hostile values: `../` climbs, absolute paths, a
symlink that points out, and NUL bytes. The app refuses each with one line naming the field,
before anything is written (no run folder, no run.yaml). The owner's --allow-dir folders pass.
"""

import dataclasses
import json
import os
from pathlib import Path

import pytest
from gradio_client import Client

from backend.access.confine import PATH_OPTIONS, Confinement
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator
from backend.events import EventLog
from backend.runs.job_manager import JobManager
from backend.serving.adapters import import_adapter
from backend.serving.chat import ChatEngine
from backend.serving.export import Exporter
from tests.helpers import ROOT

OUTSIDE = "outside the workspace and the allowed folders"
CLIMB = "../" * 40  # from any working folder, far enough up to reach /


@pytest.fixture()
def sandbox(tmp_path, workspace, secret_dataset):
    """A confined manager, a folder it may read (allowed), and a folder with secrets it may not (outside)."""
    allowed, outside = tmp_path / "allowed", tmp_path / "outside"
    for folder in (allowed, outside):
        folder.mkdir()
        (folder / "data.jsonl").write_bytes(secret_dataset.read_bytes())
        (folder / "dataset_info.json").write_text(json.dumps({"qa": {"file_name": "data.jsonl"}}))
        (folder / "model").mkdir()  # as much of a model as the checks before a start look at
        (folder / "model" / "config.json").write_text('{"model_type": "llama"}')
        (folder / "model" / "model.safetensors").write_bytes(b"")
        (folder / "model" / "vocab.json").write_text("{}")
    uploads = workspace / "uploads"
    uploads.mkdir()
    (uploads / "link.jsonl").symlink_to(outside / "data.jsonl")
    (uploads / "linkdir").symlink_to(outside)
    # An upload may be called dataset_info.json: its entries must not lead out either.
    (uploads / "dataset_info.json").write_text(json.dumps({"escape": {"file_name": "../../outside/data.jsonl"}}))
    jobs = JobManager(workspace, Confinement(workspace, [allowed]))
    (jobs.runs_dir / "linkrun").symlink_to(outside)
    yield jobs, allowed, outside
    jobs.shutdown()


def hostile_values(outside: Path, workspace: Path) -> dict[str, list[str]]:
    return {
        "absolute": [str(outside / "data.jsonl"), "/etc/passwd"],
        "climb": [f"{CLIMB}etc/passwd", str(workspace / "uploads" / ".." / ".." / "outside" / "data.jsonl")],
        "symlink": [str(workspace / "uploads" / "link.jsonl")],
        "nul": ["demo_identity\0/etc/passwd", "/etc/passwd\0"],
    }


def cases(field: str):
    return [(field, kind) for kind in ("absolute", "climb", "symlink", "nul")]


@pytest.mark.parametrize(
    "field, kind",
    cases("dataset") + cases("eval_dataset") + cases("model") + cases("ref_model") + cases("resume_from_checkpoint"),
)
def test_a_path_option_outside_the_allowed_folders_is_refused_before_anything_is_written(sandbox, field, kind):
    jobs, _, outside = sandbox
    for value in hostile_values(outside, jobs.workspace)[kind]:
        if field.endswith("model") and value.endswith("data.jsonl"):
            value = value.replace("data.jsonl", "model")
        with pytest.raises(TuneForgeError) as refused:
            jobs.start({field: value, "max_steps": 1})
        message = str(refused.value)
        assert "\n" not in message and (OUTSIDE in message or "NUL byte" in message), message
        assert field.split("_")[0] in message or "NUL" in message
    assert sorted(p.name for p in jobs.runs_dir.iterdir()) == ["linkrun"]  # no run folder, no run.yaml


@pytest.mark.parametrize(
    "dataset_dir, dataset",
    [
        ("{outside}", "qa"),  # a folder the owner did not allow
        ("{workspace}/uploads/linkdir", "qa"),  # a symlink to it
        ("{workspace}/uploads/../../outside", "qa"),
        ("{workspace}/uploads", "escape"),  # an uploaded registry whose file_name climbs out
        ("{outside}\0", "qa"),
    ],
)
def test_dataset_dir_and_its_entries_stay_inside(sandbox, dataset_dir, dataset):
    jobs, _, outside = sandbox
    dataset_dir = dataset_dir.format(outside=outside, workspace=jobs.workspace)
    with pytest.raises(TuneForgeError, match=rf"(dataset_dir|dataset 'escape') .*{OUTSIDE}|NUL byte"):
        jobs.start({"dataset": dataset, "dataset_dir": dataset_dir, "max_steps": 1})


@pytest.mark.parametrize("output_dir", ["../escape", "/tmp/escape", "a/../../escape", "linkrun", "run\0x", "x" * 300])
def test_output_dir_stays_a_run_folder_inside_runs(sandbox, output_dir):
    jobs, _, outside = sandbox
    with pytest.raises(TuneForgeError, match=r"output_dir|NUL byte|already holds a run|cannot create run folder"):
        jobs.start({"output_dir": output_dir, "max_steps": 1})
    assert not (jobs.workspace.parent / "escape").exists() and not Path("/tmp/escape").exists()
    assert sorted(os.listdir(outside)) == ["data.jsonl", "dataset_info.json", "model"]


def test_the_workspace_the_assets_and_allowed_folders_pass(sandbox):
    jobs, allowed, _ = sandbox
    for options in (
        {"dataset": "demo_identity"},
        {"dataset": str(allowed / "data.jsonl"), "eval_dataset": str(allowed / "data.jsonl")},
        {"dataset": "qa", "dataset_dir": str(allowed)},
        {"dataset": "demo_identity", "model": str(allowed / "model")},
        {"dataset": "demo_identity", "output_dir": "my-run"},
    ):
        run_id, config = jobs.prepare(options)
        assert Path(config.output_dir).parent == jobs.runs_dir


def test_resume_overrides_are_confined_like_a_start(sandbox):
    jobs, _, outside = sandbox
    run_dir = jobs.runs_dir / "failed-run"
    run_dir.mkdir()
    (run_dir / "config.yaml").write_text("dataset: demo_identity\n")
    EventLog(run_dir).emit("start", pid=None, config={})
    EventLog(run_dir).emit("end", status="failed", error="boom")
    for overrides in ({"dataset": "/etc/passwd"}, {"eval_dataset": str(outside / "data.jsonl")}, {"model": "/etc"}):
        with pytest.raises(TuneForgeError, match=OUTSIDE):
            jobs.resume("failed-run", overrides)
    assert not (run_dir / "run.yaml").exists()


@pytest.mark.parametrize("run_id", ["../..", f"{CLIMB}etc", "/etc", "linkrun", "x\0y", "x" * 300])
def test_run_ids_from_callers_name_only_folders_in_runs(sandbox, run_id):
    jobs, _, _ = sandbox
    for action in (
        jobs.status,
        jobs.abort,
        jobs.resume,
        lambda r: Exporter(jobs).zip(r, "adapter"),
        lambda r: ChatEngine(jobs).reply(r, "hi"),
        lambda r: Evaluator(jobs, ChatEngine(jobs)).evaluate(r),
    ):
        with pytest.raises(TuneForgeError, match=r"no run named|NUL byte"):
            action(run_id)


def test_evaluate_and_chat_refuse_paths_outside_before_loading_anything(sandbox):
    jobs, _, outside = sandbox
    evaluator, chat = Evaluator(jobs, ChatEngine(jobs)), ChatEngine(jobs)
    for value in ("/etc/passwd", str(outside / "data.jsonl"), f"{CLIMB}etc/passwd", "x\0y"):
        with pytest.raises(TuneForgeError, match=rf"evaluation dataset .*({OUTSIDE}|NUL byte)"):
            evaluator.evaluate("base", value)
    for model in ("/etc", str(outside / "model"), f"{CLIMB}tmp", "x\0"):
        with pytest.raises(TuneForgeError, match=rf"chat model .*({OUTSIDE}|NUL byte)"):
            chat.reply(f"base:{model}", "hi")
    assert chat._loaded is None


def test_adapter_import_reads_only_allowed_folders_and_writes_only_runs(sandbox):
    jobs, allowed, outside = sandbox
    for folder in (allowed, outside):
        adapter = folder / "adapter"
        adapter.mkdir()
        (adapter / "adapter_config.json").write_text(json.dumps({"base_model_name_or_path": "default", "r": 4}))
        (adapter / "adapter_model.safetensors").write_bytes(b"not read before the checks")
    with pytest.raises(TuneForgeError, match=rf"adapter folder .*{OUTSIDE}"):
        import_adapter(jobs, outside / "adapter")
    with pytest.raises(TuneForgeError, match=rf"adapter folder .*{OUTSIDE}"):
        import_adapter(jobs, f"{jobs.workspace}/uploads/linkdir/adapter")
    for name in ("../escape", "/tmp/escape", "linkrun"):
        with pytest.raises(TuneForgeError, match="is taken or not a plain name"):
            import_adapter(jobs, allowed / "adapter", name)
    with pytest.raises(TuneForgeError, match="run name contains a NUL byte"):
        import_adapter(jobs, allowed / "adapter", "x\0y")
    (allowed / "adapter" / "tokenizer.json").symlink_to(outside / "data.jsonl")  # a file inside that points out
    with pytest.raises(TuneForgeError, match=rf"adapter folder's file .*{OUTSIDE}"):
        import_adapter(jobs, allowed / "adapter")
    (allowed / "adapter" / "tokenizer.json").unlink()
    config = json.loads((allowed / "adapter" / "adapter_config.json").read_text())
    (allowed / "adapter" / "adapter_config.json").write_text(
        json.dumps({**config, "base_model_name_or_path": str(outside / "model")})
    )
    with pytest.raises(TuneForgeError, match=rf"the adapter's base model .*{OUTSIDE}"):
        import_adapter(jobs, allowed / "adapter")
    assert sorted(p.name for p in jobs.runs_dir.iterdir()) == ["linkrun"]


def test_the_dataset_tab_preview_refuses_files_outside(sandbox):
    """The Dataset tab shows a file's first rows, so it is the easiest way to read a file: it is confined too."""
    from webui.context import AppContext
    from webui.tab_dataset import DatasetTab

    jobs, _, outside = sandbox
    tab = DatasetTab(AppContext(jobs=jobs, chat=None, blocks=None))
    for dataset in ("/etc/passwd", str(outside / "data.jsonl"), f"{CLIMB}etc/passwd"):
        values = [getattr(TrainConfig(dataset=dataset), f.name) for f in dataclasses.fields(TrainConfig)]
        with pytest.raises(TuneForgeError, match=OUTSIDE):
            tab._inspect(values)


def test_every_text_option_is_either_confined_or_known_not_to_be_a_path():
    """A new text option must be marked path in backend.config or added to this list, so no path goes unchecked."""
    not_paths = {"method", "task", "dataset_format", "template", "report_to", "metric_for_best_model", "lora_target"}
    not_paths |= {"lr_scheduler_type"}
    not_paths |= {"prompt_column", "response_column", "system_column", "text_column", "label_column"}
    not_paths |= {"identity_name", "identity_author"}
    not_paths |= {"chosen_column", "rejected_column", "pref_loss", "strategy", "precision", "master_addr"}
    not_paths |= {"answer_column", "reward_regex", "reward_keywords", "reward_avoid_words"}
    text = {f.name for f in dataclasses.fields(TrainConfig) if f.type == "str"}
    assert text - not_paths == set(PATH_OPTIONS), "classify each new text option: a path (confined) or not"


def test_the_running_app_refuses_paths_outside_through_its_api(app, tmp_path):
    """Through gradio_client, as a remote caller would: each refusal is one line, and nothing is written."""
    url, workspace = app
    secret = tmp_path / "not-allowed.jsonl"
    secret.write_text('{"instruction": "q", "output": "a"}\n')
    client = Client(url, verbose=False)
    calls = [
        ({"dataset": str(secret)}, "/train_start", "dataset"),
        ({"dataset": "/etc/passwd"}, "/train_start", "dataset"),
        ({"dataset": f"{CLIMB}etc/passwd"}, "/train_start", "dataset"),
        ({"dataset_dir": str(ROOT / "backend")}, "/train_start", "dataset_dir"),
        ({"model": "/etc"}, "/train_start", "model"),
        ({"eval_dataset": str(secret)}, "/train_start", "eval_dataset"),
        ({"output_dir": "../../escape"}, "/train_start", "output_dir"),
        ({"task": "grpo", "rewards": "json", "reward_json_schema": "/etc/passwd"}, "/train_start", "json_schema"),
        ({"dataset": "demo_identity\0x"}, "/train_start", "NUL byte"),
    ]
    for config, api, named in calls:
        with pytest.raises(Exception, match=named) as refused:
            client.predict(config, api_name=api)
        assert OUTSIDE in str(refused.value) or "NUL" in str(refused.value) or "output_dir" in str(refused.value)
    with pytest.raises(Exception, match=rf"evaluation dataset .*{OUTSIDE}"):
        client.predict("base", str(secret), api_name="/evaluate")
    with pytest.raises(Exception, match=rf"chat model .*{OUTSIDE}"):
        client.predict("base:/etc", "hi", [], api_name="/chat")
    for run_id in ("../../..", "/etc", "x\0y"):
        with pytest.raises(Exception, match=r"no run named|NUL byte"):
            client.predict(run_id, api_name="/train_status")
        with pytest.raises(Exception, match=r"no run named|NUL byte"):
            client.predict(run_id, {"kind": "adapter"}, api_name="/export")
    assert not (workspace.parent / "escape").exists()
    assert not [p for p in (workspace / "runs").iterdir() if (p / "run.yaml").exists() and "escape" in p.name]
