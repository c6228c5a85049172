"""Preference tuning: dpo, orpo and kto data read with located errors, trained through TRL, and evaluated."""

import json

import pytest

from backend.config import TrainConfig
from backend.data import DataOptions, ExampleReader
from backend.errors import TuneForgeError
from backend.events import read_events
from backend.llamafactory import load_config_file
from backend.paths import ASSETS_DIR
from tests.helpers import LLAMAFACTORY_DATA, finish, run_cli_in_process, train_in_process, write_config

needs_llamafactory = pytest.mark.skipif(
    not LLAMAFACTORY_DATA.is_dir(),
    reason=f"{LLAMAFACTORY_DATA} is absent: LLaMA-Factory's demo data ships beside the repo in CI, not in clones",
)
REWARDS = ("rewards/chosen", "rewards/rejected", "rewards/margins", "rewards/accuracies")


def read(dataset, task="dpo", **options):
    return list(ExampleReader(str(dataset), DataOptions(dataset=str(dataset), task=task, **options)))


def write_json(path, rows):
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


# ---- data ----------------------------------------------------------------------------------


@needs_llamafactory
def test_llamafactory_dpo_demo_reads_as_pairs_of_its_own_answers():
    raw = json.loads((LLAMAFACTORY_DATA / "dpo_en_demo.json").read_text())
    examples = read("dpo_en_demo", dataset_dir=str(LLAMAFACTORY_DATA))
    assert len(examples) == len(raw) == 300
    for example, row in zip(examples[:20], raw, strict=False):
        assert example["messages"][-1] == {"role": "assistant", "content": row["chosen"]["value"]}
        assert example["rejected"] == row["rejected"]["value"]
        assert [m["content"] for m in example["messages"][:-1]] == [t["value"] for t in row["conversations"]]


@needs_llamafactory
def test_llamafactory_kto_demo_keeps_each_answers_judgement():
    raw = json.loads((LLAMAFACTORY_DATA / "kto_en_demo.json").read_text())
    examples = read("kto_en_demo", task="kto", dataset_dir=str(LLAMAFACTORY_DATA))
    assert [e["desirable"] for e in examples] == [r["label"] for r in raw]
    assert [e["messages"][-1]["content"] for e in examples] == [r["messages"][-1]["content"] for r in raw]


@needs_llamafactory
def test_preference_data_for_sft_says_which_tasks_train_it():
    with pytest.raises(TuneForgeError, match="format preference does not fit task sft"):
        read("dpo_en_demo", task="sft", dataset_dir=str(LLAMAFACTORY_DATA))


@pytest.mark.parametrize(
    "row",
    [
        {"instruction": "Name a colour.", "input": "", "chosen": "Blue.", "rejected": "Well, one colour is blue."},
        {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Well, one colour is blue."},
        {
            "prompt": [{"role": "user", "content": "Name a colour."}],
            "chosen": [{"role": "assistant", "content": "Blue."}],
            "rejected": [{"role": "assistant", "content": "Well, one colour is blue."}],
        },
        {
            "messages": [{"role": "user", "content": "Name a colour."}],
            "chosen": {"role": "assistant", "content": "Blue."},
            "rejected": {"role": "assistant", "content": "Well, one colour is blue."},
        },
    ],
    ids=["alpaca", "prompt-text", "trl-conversational", "openai"],
)
def test_every_pair_layout_reads_the_same(tmp_path, row):
    (example,) = read(write_json(tmp_path / "pairs.json", [row]))
    assert example == {
        "messages": [{"role": "user", "content": "Name a colour."}, {"role": "assistant", "content": "Blue."}],
        "rejected": "Well, one colour is blue.",
    }


def test_kto_reads_pairs_as_two_judged_answers_and_labels_in_words(tmp_path):
    from backend.training.preference import trl_rows

    pairs = read(ASSETS_DIR / "demo_preference.json", task="kto")
    rows = trl_rows(pairs[:4], "kto", seed=0)
    assert len(rows) == 8 and sorted(r["label"] for r in rows) == [False] * 4 + [True] * 4
    judged = [{"prompt": "Is water wet?", "completion": "Yes.", "label": "yes"}]
    judged.append({"prompt": "Is fire cold?", "completion": "Yes.", "label": "false"})
    assert [e["desirable"] for e in read(write_json(tmp_path / "judged.json", judged), task="kto")] == [True, False]


@pytest.mark.parametrize(
    "row, task, message",
    [
        ({"prompt": "Hi", "chosen": "Hello.", "rejected": "Hello."}, "dpo", "chosen and rejected answers are the same"),
        ({"prompt": "Hi", "chosen": "Hello.", "rejected": ""}, "dpo", "empty rejected answer"),
        ({"prompt": "Hi", "chosen": 3, "rejected": "Hey."}, "dpo", "'chosen' must be a text or a turn"),
        (
            {"messages": [{"role": "assistant", "content": "Hi"}], "chosen": "A.", "rejected": "B."},
            "dpo",
            "the prompt must end with a user turn, not assistant",
        ),
        ({"prompt": "Hi", "completion": "Hello.", "label": "maybe"}, "kto", "label must be true or false, got 'maybe'"),
        (
            {"messages": [{"role": "user", "content": "Hi"}], "label": True},
            "kto",
            "the conversation must end with the assistant's answer being judged",
        ),
    ],
)
def test_bad_preference_rows_are_refused_with_their_row_number(tmp_path, row, task, message):
    good = {"prompt": "Name a colour.", "chosen": "Blue.", "rejected": "Well, blue."}
    if task == "kto":
        good = {"prompt": "Name a colour.", "completion": "Blue.", "label": True}
    path = write_json(tmp_path / "rows.json", [good, row])
    with pytest.raises(TuneForgeError) as refused:
        read(path, task=task)
    assert "row 2" in str(refused.value) and message in str(refused.value) and "\n" not in str(refused.value)


def test_the_demo_pairs_follow_their_visible_rule():
    """Chosen answers are one sentence; rejected ones are several, so a tuned model's style can be seen."""
    examples = read(ASSETS_DIR / "demo_preference.json")
    assert len(examples) >= 60
    for example in examples:
        chosen, rejected = example["messages"][-1]["content"], example["rejected"]
        assert sum(chosen.count(mark) for mark in ".!?") == 1 and chosen.rstrip()[-1] in ".!?"
        assert sum(rejected.count(mark) for mark in ".!?") >= 3


def test_pref_loss_must_fit_the_task_and_follows_it_by_default():
    assert TrainConfig.from_dict({"task": "kto"}).pref_loss == "kto"
    assert TrainConfig.from_dict({"task": "orpo"}).pref_loss == "orpo"
    assert TrainConfig.from_dict({"task": "dpo", "pref_loss": "ipo"}).pref_loss == "ipo"
    with pytest.raises(TuneForgeError, match="pref_loss='kto' does not apply to task dpo"):
        TrainConfig.from_dict({"task": "dpo", "pref_loss": "kto"})


def test_llamafactory_preference_stages_translate():
    base = "model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct\nfinetuning_type: lora\n"
    dpo = load_config_file(base + "stage: dpo\npref_beta: 0.2\npref_loss: ipo\n")
    assert (dpo["task"], dpo["pref_loss"], dpo["pref_beta"]) == ("dpo", "ipo", 0.2)
    assert load_config_file(base + "stage: dpo\npref_loss: orpo\n")["task"] == "orpo"
    kto = load_config_file(base + "stage: kto\npref_loss: sigmoid\n")
    assert (kto["task"], kto["pref_loss"]) == ("kto", "kto")
    with pytest.raises(TuneForgeError, match="pref_loss: 'simpo' is not supported"):
        load_config_file(base + "stage: dpo\npref_loss: simpo\n")


# ---- training --------------------------------------------------------------------------------


def train(tmp_path, **options):
    tmp_path.mkdir(exist_ok=True)
    run_dir = tmp_path / "run"
    config = {"output_dir": str(run_dir), "save_steps": 0, "report_to": "none", "logging_steps": 1, **options}
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", **config))
    assert result.returncode == 0, result.stderr[-3000:]
    return run_dir, read_events(run_dir)


def check_preference_run(run_dir, events, steps):
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == list(range(1, steps + 1))
    assert all(key in logs[-1] for key in ("rewards/chosen", "rewards/margins"))
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == steps and "rewards/margins" in metrics


@needs_llamafactory
def test_dpo_trains_a_lora_adapter_on_the_shared_demo_that_plain_peft_loads(tmp_path, small_model):
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    run_dir, events = train(
        tmp_path, model=small_model, task="dpo", dataset="dpo_en_demo", dataset_dir=str(LLAMAFACTORY_DATA),
        max_samples=6, val_size=2, max_steps=2, per_device_train_batch_size=2, cutoff_len=384, eval_steps=100,
    )  # fmt: skip
    check_preference_run(run_dir, events, 2)
    assert {key for key in REWARDS} <= set(next(e for e in events if e["type"] == "log"))
    evals = [e for e in events if e["type"] == "eval"]
    assert evals and "rewards/margins" in evals[-1]  # the final validation pass scores the held-out pairs
    model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(small_model), run_dir)
    assert any("lora_A" in name for name, _ in model.named_parameters())
    # The reference is the base with the adapter off: no second model is loaded (full dpo loads one, below).
    assert not any(e.get("message", "").startswith("loading the reference model") for e in events)


@needs_llamafactory
def test_kto_trains_on_the_shared_demo(tmp_path, small_model):
    run_dir, events = train(
        tmp_path, model=small_model, task="kto", dataset="kto_en_demo", dataset_dir=str(LLAMAFACTORY_DATA),
        max_samples=4, val_size=0, max_steps=2, per_device_train_batch_size=2, cutoff_len=512,
    )  # fmt: skip
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == [1, 2] and all(e["loss"] is not None for e in logs)
    assert "kl" in logs[-1] and (run_dir / "adapter_model.safetensors").exists()


def test_kto_refuses_one_example_a_batch_before_loading_anything(tmp_path):
    config = write_config(
        tmp_path / "run.yaml", task="kto", dataset="demo_preference", per_device_train_batch_size=1,
        output_dir=str(tmp_path / "run"),
    )  # fmt: skip
    result = run_cli_in_process(config)
    assert result.returncode == 2 and "kto needs per_device_train_batch_size of 2 or more" in result.stderr
    assert "Traceback" not in result.stderr


def test_orpo_and_full_dpo_train_without_an_adapter_reference(tmp_path, small_model):
    """orpo needs no reference model; full dpo holds a frozen copy and saves a plain transformers model."""
    from transformers import AutoModelForCausalLM

    run_dir, events = train(
        tmp_path / "orpo", model=small_model, task="orpo", dataset="demo_preference", max_samples=8, val_size=0,
        max_steps=2, per_device_train_batch_size=2, cutoff_len=256,
    )  # fmt: skip
    check_preference_run(run_dir, events, 2)
    run_dir, events = train(
        tmp_path / "full", model=small_model, task="dpo", method="full", dataset="demo_preference", max_samples=4,
        val_size=0, max_steps=1, per_device_train_batch_size=2, cutoff_len=256, learning_rate=1e-5,
    )  # fmt: skip
    check_preference_run(run_dir, events, 1)
    assert any(e.get("message", "").startswith("loading the reference model") for e in events)
    AutoModelForCausalLM.from_pretrained(run_dir)  # config.json + model.safetensors


@pytest.mark.slow
def test_dpo_on_the_demo_widens_the_margin_and_beats_the_base_on_held_out_pairs(tmp_path, default_model_dir):
    """The issue's acceptance run: a few LoRA steps on the demo pairs (chosen answers are one sentence).

    Against the base: the job scores its held-out pairs against its reference, which for LoRA is the base
    model (the adapter switched off). The Evaluate tab's own comparison is checked on the tiny model below.
    """
    from backend.runs.job_manager import JobManager

    jobs = JobManager(tmp_path / "workspace")
    run_id = jobs.start(DEMO_DPO)  # a niced job, as the app starts it: the other worker's browser keeps its CPU
    finish(jobs, run_id, timeout=1200)
    events = jobs.events(run_id)
    logs = [e for e in events if e["type"] == "log"]
    first, last = logs[:4], logs[-4:]
    mean = lambda rows: sum(e["rewards/margins"] for e in rows) / len(rows)  # noqa: E731
    assert mean(last) > mean(first) + 0.5, (mean(first), mean(last))
    # The 16 held-out pairs, scored by the job against its reference (the base): how often the tuned model
    # moved the chosen answer up more than the rejected one, and by how much (2026-12-03: 8 of 8, 1.33).
    held_out = next(e for e in events if e["type"] == "eval")
    assert held_out["rewards/accuracies"] >= 0.75 and held_out["rewards/margins"] > 0.5, held_out

    jobs.shutdown()


def test_a_dpo_run_is_a_run_like_any_other_in_history_compare_and_export(tmp_path, small_model):
    """In the history, in a comparison with another run, exported with its metrics, and against its base in the
    Evaluate tab's terms (on the tiny model)."""
    from backend.evaluation.evaluate import Evaluator
    from backend.runs.compare import differing_options, final_metrics
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.serving.export import Exporter

    jobs = JobManager(tmp_path / "workspace")
    run_id = train_in_process(jobs, {**DEMO_DPO, "model": small_model, "max_steps": 2})
    other = train_in_process(jobs, {**DEMO_DPO, "model": small_model, "max_steps": 1, "val_size": 4, "pref_beta": 0.2})
    history = {row["run_id"]: row for row in jobs.list_runs()}
    assert history[run_id]["status"] == history[other]["status"] == "completed"
    assert history[run_id]["task"] == "dpo"
    differ = {row["option"] for row in differing_options(jobs, [run_id, other])}
    assert differ == {"max_steps", "val_size", "pref_beta"}
    margins = next(row for row in final_metrics(jobs, [run_id, other]) if row["metric"] == "eval_rewards/margins")
    assert all(isinstance(margins[r], float) for r in (run_id, other))  # the held-out margin, side by side
    card = (Exporter(jobs).export(run_id, "adapter") / "README.md").read_text()
    assert "task dpo" in card and "| rewards/margins |" in card
    # The Evaluate tab's comparison of a preference run: each held-out pair scored by both models.
    compared = Evaluator(jobs, ChatEngine(jobs)).compare_with_base(other, max_new_tokens=1)
    table = {row["metric"]: row for row in compared["comparison"]}
    assert all(0 <= table["win_rate"][side] <= 1 for side in ("base", "tuned"))
    margin = table["logp_margin"]
    assert margin["difference"] == pytest.approx(margin["tuned"] - margin["base"]) and len(compared["rows"]) == 4
    jobs.shutdown()


# Small enough for the suite on a 2-core CPU (DPO steps cost about eight sft steps: chosen and
# rejected, through the model and its reference); bench/preference_demo.py runs the longer demo.
# 8 steps and 8 held-out pairs (2026-12-03, 2-core Zen 5, fp32): the training margin widened by 0.81
# against the 0.5 the test asks, and the held-out pairs scored 8 of 8 with a margin of 1.33. 12 steps,
# 16 pairs and the Evaluate tab's comparison took 160 s; this takes 60 s.
DEMO_DPO = {
    "task": "dpo",
    "dataset": "demo_preference",
    "val_size": 8,
    "max_steps": 8,
    "per_device_train_batch_size": 2,
    "learning_rate": 5e-4,
    "cutoff_len": 192,
    "eval_steps": 100,
    "save_steps": 0,
    "report_to": "none",
}
