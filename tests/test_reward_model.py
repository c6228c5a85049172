"""Task rm (a reward model on preference pairs), its score as a GRPO reward (rm:<run>), and task ppo's refusal.

One reward model is trained once, on the 320-token tiny model, on pairs whose chosen and rejected answers
differ only in their last word; which word is preferred is set against the untrained head's own leaning,
so any rise in held-out accuracy is what training added. The other tests use that run.
"""

import json
import shutil

import pytest
import yaml

from backend.access.confine import Confinement
from backend.access.gate import Gate
from backend.access.roles import Role
from backend.checkpoints import pick_checkpoint
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator
from backend.events import read_events
from backend.llamafactory import load_config_file
from backend.rewards.learned import base_scorer, dialogue, score_conversations
from backend.rewards.reward_spec import RewardSpec, parse_rewards
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from tests.helpers import LLAMAFACTORY_DATA, finish, run_cli_in_process, train_in_process, wait_for, write_config

TOPICS = ["the sea", "a cat", "the sun", "a tree", "the moon", "a dog", "a city", "a river", "bread", "music",
          "snow", "a bird", "a hill", "rain", "a boat", "a road", "tea", "a lamp", "wind", "a book"]  # fmt: skip
# A grpo run as cheap as it gets: 4 completions a step (2 prompts x 2) of at most 8 tokens.
CHEAP_GRPO = {
    "task": "grpo", "dataset": "demo_arithmetic", "max_samples": 8, "max_steps": 2, "per_device_train_batch_size": 4,
    "num_generations": 2, "max_completion_length": 8, "val_size": 0, "save_steps": 0, "report_to": "none",
}  # fmt: skip


def one_line(refused) -> str:
    message = str(refused.value)
    assert "\n" not in message and message.strip(), message
    return message


def answer(topic: str, word: str) -> str:
    return f"I like {topic}. {word}"


@pytest.fixture(scope="module")
def preferred(small_model) -> tuple[str, str]:
    """(the word the pairs prefer, the other): the one the untrained head (seed 42) scores lower."""
    from backend.models.sources import load_tokenizer

    tokenizer = load_tokenizer(small_model)
    model = base_scorer(small_model, seed=42).eval()
    model.config.pad_token_id = tokenizer.pad_token_id
    prompt = [{"role": "user", "content": "Tell me about the sea."}]
    yes, no = score_conversations(model, tokenizer, [dialogue(prompt, answer("the sea", w)) for w in ("yes", "no")])
    return ("yes", "no") if yes < no else ("no", "yes")


@pytest.fixture(scope="module")
def rm_jobs(tmp_path_factory):
    jobs = JobManager(tmp_path_factory.mktemp("rm") / "workspace")
    yield jobs
    jobs.shutdown()


@pytest.fixture(scope="module")
def pairs_file(rm_jobs, preferred):
    good, bad = preferred
    rows = [{"prompt": f"Tell me about {t}.", "chosen": answer(t, good), "rejected": answer(t, bad)} for t in TOPICS]
    path = rm_jobs.workspace / "pairs.json"
    path.write_text(json.dumps(rows), encoding="utf-8")
    return path


RM_OPTIONS = {
    "task": "rm", "max_steps": 12, "per_device_train_batch_size": 4, "learning_rate": 2e-3, "val_size": 6,
    "eval_steps": 6, "save_steps": 0, "logging_steps": 3, "report_to": "none", "seed": 42,
}  # fmt: skip


@pytest.fixture(scope="module")
def rm_run(rm_jobs, pairs_file, small_model) -> str:
    return train_in_process(rm_jobs, {**RM_OPTIONS, "model": small_model, "dataset": str(pairs_file)})


# ---- task rm ----------------------------------------------------------------------------------------


def test_a_reward_model_learns_to_rank_held_out_pairs_it_first_got_wrong(rm_jobs, rm_run):
    run_dir = rm_jobs.run_dir(rm_run)
    events = read_events(run_dir)
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == [3, 6, 9, 12]
    assert all(0 <= e["rewards/accuracies"] <= 1 and "rewards/margins" in e for e in logs)
    evals = [e for e in events if e["type"] == "eval"]
    assert [e["step"] for e in evals] == [6, 12] and all("eval_margin" in e for e in evals)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["eval_accuracy"] == evals[-1]["eval_accuracy"] >= 0.8
    assert (run_dir / "adapter_config.json").exists()  # lora: an adapter, the trained head inside it

    scores = Evaluator(rm_jobs, ChatEngine(rm_jobs)).evaluate(rm_run)
    assert scores["rows_evaluated"] == 6
    assert scores["base_accuracy"] <= 0.5 < 0.8 <= scores["accuracy"]  # the base leaned the other way
    assert scores["margin"] > 0 > scores["base_margin"]
    assert scores["accuracy"] == pytest.approx(metrics["eval_accuracy"])


def test_the_chat_tab_scores_a_reply_with_the_reward_model_and_will_not_chat_with_it(rm_jobs, rm_run, preferred):
    chat = ChatEngine(rm_jobs)
    assert rm_run in chat.reward_models() and rm_run not in chat.targets()
    good, bad = (chat.score_reply(rm_run, "Tell me about a fox.", answer("a fox", w)) for w in preferred)
    assert good > bad
    with pytest.raises(TuneForgeError) as refused:
        list(chat.stream(rm_run, "hello"))
    assert "is a reward model" in one_line(refused)


def test_compare_with_base_lists_each_pairs_scores(rm_jobs, rm_run):
    result = Evaluator(rm_jobs, ChatEngine(rm_jobs)).compare_with_base(rm_run)
    assert [row["metric"] for row in result["comparison"]] == ["accuracy", "margin"]
    assert len(result["rows"]) == 6
    for row in result["rows"]:
        assert {"prompt", "chosen", "rejected", "score_chosen", "score_rejected", "base_score_chosen"} <= row.keys()


# ---- rm:<run> as a grpo reward ----------------------------------------------------------------------------


def test_rewards_spec_reads_a_reward_model_with_or_without_a_weight():
    assert parse_rewards("rm:/runs/my-rm:0.5, exact_answer") == [
        RewardSpec("rm", 0.5, model="/runs/my-rm"), RewardSpec("exact_answer", 1.0)
    ]  # fmt: skip
    assert parse_rewards("rm:20261206-081500-ab12") == [RewardSpec("rm", 1.0, model="20261206-081500-ab12")]
    for spec in ("rm", "rm:", "rm:0.5"):
        with pytest.raises(TuneForgeError, match="rm needs a reward-model run"):
            parse_rewards(spec)


def test_a_grpo_run_with_a_reward_model_logs_reward_rm(tmp_path, rm_jobs, rm_run, small_model):
    run_dir = tmp_path / "grpo"
    rewards = f"rm:{rm_jobs.run_dir(rm_run)}:0.5, length"
    options = {**CHEAP_GRPO, "model": small_model, "rewards": rewards, "reward_target_length": 4}
    result = run_cli_in_process(write_config(tmp_path / "run.yaml", **options, output_dir=str(run_dir)))
    assert result.returncode == 0, result.stdout[-3000:]
    events = read_events(run_dir)
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == [1, 2]
    for log in logs:
        assert isinstance(log["reward/rm"], float) and 0 <= log["reward/length"] <= 1
        assert log["reward"] == pytest.approx(0.5 * log["reward/rm"] + log["reward/length"], abs=1e-3)
    rows = [e for e in events if e["type"] == "completions"][-1]["rows"]
    assert all(isinstance(row["rm"], float) for row in rows)
    assert "reward/rm" in json.loads((run_dir / "metrics.json").read_text())


def test_the_app_takes_a_reward_models_run_id_and_refuses_anything_else(tmp_path, rm_jobs, rm_run, small_model):
    workspace = rm_jobs.workspace
    outside = tmp_path / "outside-rm"
    shutil.copytree(rm_jobs.run_dir(rm_run), outside)
    (workspace / "runs" / "link-rm").symlink_to(outside)
    sft_run = workspace / "runs" / "an-sft-run"
    sft_run.mkdir()
    (sft_run / "config.yaml").write_text("task: sft\n")
    jobs = JobManager(workspace, Confinement(workspace))
    try:
        _, config = jobs.prepare({**CHEAP_GRPO, "model": small_model, "rewards": f"rm:{rm_run}:0.5"})
        assert config.rewards == f"rm:{rm_jobs.run_dir(rm_run)}:0.5"
        before = sorted(p.name for p in jobs.runs_dir.iterdir())
        for named, said in [
            (str(outside), "is not a run id"),
            (f"../runs/{rm_run}", "is not a run id"),
            ("link-rm", "no run named 'link-rm'"),
            ("no-such-run", "no run named 'no-such-run'"),
            ("an-sft-run", "a run of task sft, not a reward model"),
        ]:
            with pytest.raises(TuneForgeError) as refused:
                jobs.start({**CHEAP_GRPO, "model": small_model, "rewards": f"exact_answer, rm:{named}"})
            assert said in one_line(refused) and "rewards: rm" in str(refused.value)
        assert sorted(p.name for p in jobs.runs_dir.iterdir()) == before  # nothing written on a refused word
        # A reward model runs no code of the user's: a member may name any run of the studio, which all may read.
        gate = Gate(jobs, {"alice": Role.MEMBER})
        gate.check_options(gate.person("alice"), {**CHEAP_GRPO, "rewards": f"rm:{rm_run}"})
    finally:
        jobs.shutdown()


# ---- abort and resume ---------------------------------------------------------------------------------------


def test_an_rm_run_aborted_after_a_checkpoint_resumes_and_completes(workspace, pairs_file, small_model):
    jobs = JobManager(workspace)
    try:
        options = {**RM_OPTIONS, "model": small_model, "dataset": str(pairs_file), "max_steps": 10_000,
                   "save_steps": 1, "logging_steps": 1, "eval_steps": 10_000}  # fmt: skip
        run_id = jobs.start(options)
        run_dir = jobs.run_dir(run_id)
        wait_for(lambda: any(e["type"] == "checkpoint" for e in jobs.events(run_id)))
        jobs.abort(run_id)
        assert jobs.status(run_id)["status"] == "aborted"
        checkpoint, _ = pick_checkpoint(run_dir, "last")
        saved = int(checkpoint.name.split("-")[1])

        jobs.resume(run_id, {"max_steps": saved + 1})
        status = finish(jobs, run_id)
        assert status["step"] == saved + 1 and status["resumes"] == 1
        events = jobs.events(run_id)
        assert [e["step"] for e in events if e["type"] == "log"] == list(range(1, saved + 2))
        metrics = json.loads((run_dir / "metrics.json").read_text())
        assert metrics["global_step"] == saved + 1 and 0 <= metrics["eval_accuracy"] <= 1
    finally:
        jobs.shutdown()


# ---- task ppo: refused, naming why ------------------------------------------------------------------------------


def test_ppo_is_refused_in_one_line_from_the_config_the_app_and_a_llamafactory_yaml(tmp_path, rm_jobs, rm_run):
    with pytest.raises(TuneForgeError) as refused:
        TrainConfig.from_dict({"task": "ppo", "reward_model": str(rm_jobs.run_dir(rm_run)), "ppo_epochs": 2})
    line = one_line(refused)
    assert "task ppo cannot run: TRL 1.16.0" in line and "has no PPO trainer" in line and "rm:<run>" in line
    with pytest.raises(TuneForgeError, match="task ppo cannot run"):
        rm_jobs.start({"task": "ppo", "reward_model": rm_run})

    lf = {"model_name_or_path": "HuggingFaceTB/SmolLM2-135M-Instruct", "stage": "ppo", "do_train": True,
          "finetuning_type": "lora", "reward_model": str(rm_jobs.run_dir(rm_run)), "reward_model_type": "lora",
          "ppo_epochs": 2, "ppo_buffer_size": 1, "ppo_target": 6.0, "dataset": "alpaca_en_demo",
          "output_dir": str(tmp_path / "ppo")}  # fmt: skip
    config = tmp_path / "ppo.yaml"
    config.write_text(yaml.safe_dump(lf))
    result = run_cli_in_process(config)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    (said,) = [line for line in result.stderr.strip().splitlines() if line.startswith("error:")]
    assert said.startswith("error: task ppo cannot run: TRL 1.16.0")
    assert not (tmp_path / "ppo").exists()


def test_task_rm_starts_from_the_bundled_pairs_and_reads_the_pair_layouts_dpo_reads(tmp_path):
    from backend.data import DataOptions, ExampleReader

    assert TrainConfig.from_dict({"task": "rm"}).dataset == "demo_preference"
    openai = {"messages": [{"role": "user", "content": "Hi"}], "chosen": {"role": "assistant", "content": "Hello."},
              "rejected": {"role": "assistant", "content": "Go away."}}  # fmt: skip
    plain = {"prompt": "Hi", "chosen": "Hello.", "rejected": "Go away."}
    for row in (openai, plain):
        path = tmp_path / "pairs.json"
        path.write_text(json.dumps([row]))
        (example,) = ExampleReader(str(path), DataOptions(dataset=str(path), task="rm"))
        assert example["messages"][-1]["content"] == "Hello." and example["rejected"] == "Go away."
    if LLAMAFACTORY_DATA.is_dir():
        options = DataOptions(dataset="dpo_en_demo", dataset_dir=str(LLAMAFACTORY_DATA), task="rm")
        assert len(list(ExampleReader("dpo_en_demo", options))) == 300


def test_a_llamafactory_rm_yaml_translates_to_task_rm():
    options = load_config_file(
        "model_name_or_path: HuggingFaceTB/SmolLM2-135M-Instruct\nstage: rm\ndo_train: true\n"
        "finetuning_type: lora\nlora_target: all\ndataset: dpo_en_demo\ncutoff_len: 1024\n"
    )
    assert {k: options[k] for k in ("task", "model", "method", "dataset")} == {
        "task": "rm", "model": "default", "method": "lora", "dataset": "dpo_en_demo"
    }  # fmt: skip
