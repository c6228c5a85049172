"""Task grpo: rewards a user names (built-in or their own file), prompts from any chat layout, training
through TRL's GRPOTrainer with reward events, refusals in one line, the app's rules for reward files,
abort and resume, and base-vs-tuned reward evaluation. Every run is on the 320-token tiny model."""

import json
import shutil

import pytest
import yaml

from backend.access.confine import Confinement
from backend.access.gate import Gate
from backend.access.roles import Role
from backend.checkpoints import pick_checkpoint
from backend.config import TrainConfig
from backend.data import DataOptions, ExampleReader
from backend.errors import TuneForgeError
from backend.evaluation.evaluate import Evaluator
from backend.events import read_events
from backend.rewards.builtin import BUILT_INS, RewardSettings
from backend.rewards.reward_spec import RewardSpec, parse_rewards
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from tests.helpers import DATA, finish, run_cli_in_process, train_in_process, wait_for, write_config

GRPO_DATA = DATA / "grpo"
REWARD_FILE = GRPO_DATA / "rewards.py"
# The cheapest grpo run: 4 completions a step (2 prompts x 2 generations) of at most 8 tokens.
CHEAP = {
    "task": "grpo",
    "dataset": "demo_arithmetic",
    "max_samples": 8,
    "max_steps": 2,
    "per_device_train_batch_size": 4,
    "num_generations": 2,
    "max_completion_length": 8,
    "val_size": 0,
    "save_steps": 0,
    "logging_steps": 1,
    "report_to": "none",
}


def score(name, completions, references=None, **settings):
    return BUILT_INS[name](completions, references or {}, RewardSettings(**settings))


def one_line(refused) -> str:
    message = str(refused.value)
    assert "\n" not in message and message.strip(), message
    return message


# ---- the built-in rewards, on completions a model might write ---------------------------------------


def test_exact_answer_compares_numbers_as_numbers_the_last_one_written():
    completions = ["The total is 1,000.", "1000", "It is 999, or maybe 1,000", "about 1,000 then 10", "no idea"]
    assert score("exact_answer", completions, {"answer": ["1,000"] * 5}) == [1.0, 1.0, 1.0, 0.0, 0.0]
    assert score("exact_answer", ["3.5", "$3.50", "-2"], {"answer": [3.50, "3.5", -2]}) == [1.0, 1.0, 1.0]


def test_exact_answer_reads_gsm8k_answers_after_their_hashes():
    reference = "Natalia sold 48 clips in April and 24 in May. 48 + 24 = 72.\n#### 72"
    completions = ["48 + 24 = 72", "So the answer is 72.", "48 clips"]
    assert score("exact_answer", completions, {"answer": [reference] * 3}) == [1.0, 1.0, 0.0]


def test_exact_answer_normalises_text_answers_and_needs_its_column():
    completions = ["The capital is PARIS!", "paris", "Parisian", "Lyon", "Ｐａｒｉｓ"]
    assert score("exact_answer", completions, {"answer": ["Paris."] * 5}) == [1.0, 1.0, 0.0, 0.0, 1.0]
    assert score("exact_answer", ["Blue"], {"colour": ["blue"]}, answer_column="colour") == [1.0]
    with pytest.raises(TuneForgeError) as refused:
        score("exact_answer", ["Blue"], {"colour": ["blue"]})
    assert "needs a 'answer' column" in one_line(refused) and "colour" in str(refused.value)


def test_regex_length_and_keywords_rewards():
    assert score("regex", ["  <answer>7</answer>", "7"], reward_regex=r"^<answer>\d+</answer>$") == [1.0, 0.0]
    # The shorter over the longer: 1 on target, and never flat, so a closer miss still earns more.
    lengths = ["abcde", "abcdefghij", " abcdefghij ", "", "x" * 30, "x" * 40]
    assert score("length", lengths, reward_target_length=10) == [0.5, 1.0, 1.0, 0.0, pytest.approx(1 / 3), 0.25]
    words = {"reward_keywords": "sea, wide", "reward_avoid_words": "storm"}
    assert score("keywords", ["The SEA is wide.", "The sea.", "A sea storm, wide.", "Nothing"], **words) == [
        1.0, 0.5, 0.0, 0.0,
    ]  # fmt: skip
    assert score("keywords", ["a storm", "calm"], reward_avoid_words="storm, gale") == [0.5, 1.0]


def test_json_reward_with_and_without_a_schema_inline_or_in_a_file(tmp_path):
    completions = ['{"answer": 7}', '```json\n{"answer": 7}\n```', '{"answer": "seven"}', "answer: 7", "[1, 2]"]
    assert score("json", completions) == [1.0, 1.0, 1.0, 0.0, 1.0]
    schema_file = GRPO_DATA / "schema.json"
    assert score("json", completions, reward_json_schema=str(schema_file)) == [1.0, 1.0, 0.0, 0.0, 0.0]
    inline = schema_file.read_text()
    assert score("json", completions, reward_json_schema=inline) == [1.0, 1.0, 0.0, 0.0, 0.0]
    for schema, message in [
        (str(tmp_path / "absent.json"), "reward_json_schema: cannot read"),
        ('{"type": ', "reward_json_schema is not valid JSON"),
        ('{"type": "pineapple"}', "reward_json_schema is not a valid JSON Schema"),
    ]:
        with pytest.raises(TuneForgeError) as refused:
            score("json", ['{"a": 1}'], reward_json_schema=schema)
        assert message in one_line(refused)


# ---- naming rewards, and the configs that cannot train ------------------------------------------------


def test_rewards_spec_reads_names_weights_and_custom_files():
    assert parse_rewards("exact_answer, regex:0.5, path/file.py:function:2, my.py:brevity") == [
        RewardSpec("exact_answer", 1.0),
        RewardSpec("regex", 0.5),
        RewardSpec("function", 2.0, "path/file.py"),
        RewardSpec("brevity", 1.0, "my.py"),
    ]
    assert parse_rewards("length : -1e-1")[0] == RewardSpec("length", -0.1)


@pytest.mark.parametrize(
    "spec, message",
    [
        ("exact_answr", "rewards: unknown reward 'exact_answr'"),
        ("file.txt:score", "rewards: unknown reward 'file.txt:score'"),
        ("exact_answer, regex, exact_answer:2", "rewards names 'exact_answer' twice"),
        ("a.py:score, b.py:score", "rewards names 'score' twice"),
        (" , ", "rewards is empty"),
    ],
)
def test_a_rewards_spec_that_names_nothing_trainable_is_refused_in_one_line(spec, message):
    with pytest.raises(TuneForgeError) as refused:
        parse_rewards(spec)
    assert message in one_line(refused)
    with pytest.raises(TuneForgeError) as refused:
        TrainConfig.from_dict({"task": "grpo", "rewards": spec})
    assert message in one_line(refused)


@pytest.mark.parametrize(
    "options, message",
    [
        ({"rewards": "regex", "reward_regex": ""}, "the regex reward needs reward_regex"),
        ({"rewards": "regex", "reward_regex": "(unclosed"}, "reward_regex='(unclosed' is not a valid pattern"),
        ({"rewards": "length"}, "the length reward needs reward_target_length"),
        ({"rewards": "keywords"}, "the keywords reward needs reward_keywords or reward_avoid_words"),
        ({"rewards": "exact_answer", "answer_column": " "}, "the exact_answer reward needs answer_column"),
        (
            {"rewards": "exact_answer", "per_device_train_batch_size": 3, "num_generations": 2},
            "grpo: the batch of 3 completions",
        ),
    ],
)
def test_a_grpo_config_missing_what_its_rewards_need_is_refused_in_one_line(options, message):
    with pytest.raises(TuneForgeError) as refused:
        TrainConfig.from_dict({"task": "grpo", **options})
    assert message in one_line(refused)


def test_a_custom_reward_may_return_numpy_numbers():
    """A reward computed with numpy returns numpy's float32 or int64: numbers, which a run must accept."""
    from backend.rewards.custom import call_reward, load_reward

    for name, expected in (("float32_scores", [1.0, 0.0]), ("counted", [2.0, 0.0])):
        spec = RewardSpec(name, 1.0, str(GRPO_DATA / "numpy_rewards.py"))
        assert call_reward(load_reward(spec), spec, ["42", ""], ["Q?", "Q?"], {}) == expected


def test_the_app_keeps_each_rewards_weight_as_given(workspace):
    (workspace / "rewards").mkdir()
    shutil.copy(REWARD_FILE, workspace / "rewards" / "mine.py")
    resolved = Confinement(workspace).rewards("exact_answer:0.123456789, mine.py:brevity:2.5")
    assert [(r.name, r.weight) for r in parse_rewards(resolved)] == [("exact_answer", 0.123456789), ("brevity", 2.5)]


# ---- prompts from every layout, with the columns rewards compare against --------------------------------


def read_prompts(path):
    return list(ExampleReader(str(path), DataOptions(dataset=str(path), task="grpo")))


def test_a_conversations_last_user_turn_is_the_prompt_and_its_answer_is_dropped():
    sharegpt = read_prompts(DATA / "sharegpt.json")
    assert sharegpt[0]["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello!"},
        {"role": "user", "content": "Name?"},
    ]
    openai = read_prompts(DATA / "openai.jsonl")
    assert openai[0]["messages"] == [
        {"role": "system", "content": "Short answers."},
        {"role": "user", "content": "Sky colour?"},
    ]
    assert openai[1]["messages"][-1] == {"role": "user", "content": "times 3?"}
    assert all(e["messages"][-1]["role"] == "user" for e in sharegpt + openai)


def test_alpaca_and_question_rows_keep_their_plain_columns_as_references(tmp_path):
    rows = [
        {"instruction": "Add these.", "input": "2 and 3", "output": "5", "difficulty": 1},
        {"question": "What is 6 x 7?", "answer": "#### 42", "solution": "6 x 7 = 42", "tags": ["maths"]},
        {"question": "Capital of France?", "answer": "Paris", "verified": True, "note": None},
    ]
    path = tmp_path / "mixed.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    alpaca, question, capital = read_prompts(path)
    assert alpaca["messages"][-1]["role"] == "user"
    assert "Add these." in alpaca["messages"][-1]["content"] and "2 and 3" in alpaca["messages"][-1]["content"]
    assert alpaca["references"] == {"output": "5", "difficulty": 1}
    assert question["messages"] == [{"role": "user", "content": "What is 6 x 7?"}]
    assert question["references"] == {"answer": "#### 42", "solution": "6 x 7 = 42"}  # a list is not a reference
    assert capital["references"] == {"answer": "Paris", "verified": True}


def test_the_arithmetic_demo_reads_as_questions_with_numeric_answers():
    from backend.paths import ASSETS_DIR

    examples = read_prompts(ASSETS_DIR / "demo_arithmetic.jsonl")
    assert len(examples) >= 100
    first = examples[0]
    assert first["messages"][-1]["content"].endswith("Answer with a single number.")
    assert isinstance(first["references"]["answer"], int)


# ---- training ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def grpo_jobs(tmp_path_factory):
    jobs = JobManager(tmp_path_factory.mktemp("grpo") / "workspace")
    yield jobs
    jobs.shutdown()


@pytest.fixture(scope="module")
def grpo_run(grpo_jobs, small_model) -> str:
    """Two steps with a built-in and the user's own reward (weighted), and a KL term."""
    rewards = f"exact_answer, {REWARD_FILE}:brevity:0.5"
    options = {**CHEAP, "model": small_model, "rewards": rewards, "grpo_beta": 0.04, "output_dir": "grpo-custom"}
    return train_in_process(grpo_jobs, options)


def test_a_grpo_run_with_a_custom_and_a_built_in_reward_logs_each_and_saves_an_adapter(grpo_jobs, grpo_run):
    run_dir = grpo_jobs.run_dir(grpo_run)
    events = read_events(run_dir)
    logs = [e for e in events if e["type"] == "log"]
    assert [e["step"] for e in logs] == [1, 2]
    for log in logs:
        for key in ("loss", "reward", "reward/exact_answer", "reward/brevity", "completion_length", "kl"):
            assert isinstance(log.get(key), (int, float)), (key, log)
        assert 0 <= log["reward/exact_answer"] <= 1 and 0 < log["reward/brevity"] <= 1
        assert 0 < log["completion_length"] <= 8
        assert log["reward"] == pytest.approx(log["reward/exact_answer"] + 0.5 * log["reward/brevity"], abs=1e-3)
    shown = [e for e in events if e["type"] == "completions"]
    assert [e["step"] for e in shown] == [1, 2]
    for row in shown[-1]["rows"]:
        assert {"prompt", "completion", "reward", "exact_answer", "brevity"} <= row.keys()
        assert row["prompt"].endswith("Answer with a single number.")
        assert row["brevity"] == pytest.approx(1 / (1 + len(row["completion"])))
        assert row["reward"] == pytest.approx(row["exact_answer"] + 0.5 * row["brevity"], abs=1e-3)
    assert len(shown[-1]["rows"]) == 4
    assert events[-1]["type"] == "end" and events[-1]["status"] == "completed"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["global_step"] == 2
    assert {"reward", "reward/exact_answer", "reward/brevity", "completion_length", "kl"} <= metrics.keys()
    assert (run_dir / "adapter_config.json").exists() and (run_dir / "adapter_model.safetensors").exists()


def test_without_a_kl_term_no_kl_is_logged(tmp_path, small_model):
    config = write_config(
        tmp_path / "run.yaml", **{**CHEAP, "model": small_model, "max_steps": 1, "rewards": "length",
                                  "reward_target_length": 20, "output_dir": str(tmp_path / "run")},
    )  # fmt: skip
    result = run_cli_in_process(config)
    assert result.returncode == 0, result.stdout[-3000:]
    (log,) = [e for e in read_events(tmp_path / "run") if e["type"] == "log"]
    assert {"reward", "reward/length", "completion_length"} <= log.keys() and "kl" not in log


# ---- a broken reward file ends the run in one line -----------------------------------------------------


@pytest.mark.parametrize(
    "reward, said",
    [
        ("syntax_error.py:brevity", [r"syntax_error.py line 4: SyntaxError"]),
        ("raises_at_import.py:brevity", [r"raises_at_import.py line 3: ValueError while importing: math domain error"]),
        ("raises_at_call.py:brevity", [r"reward brevity failed: ", r"raises_at_call.py line 3: ZeroDivisionError"]),
        ("wrong_returns.py:not_a_list", [r"wrong_returns.py) returned float; it must return a list of numbers"]),
        ("wrong_returns.py:wrong_length", [r"wrong_returns.py) returned 1 values for 4 completions"]),
        ("wrong_returns.py:a_string", [r"wrong_returns.py) returned 'good' among its rewards"]),
        ("rewards.py:nothing_here", [r"rewards.py: no function named 'nothing_here'"]),
        ("absent.py:score", [r"reward file not found: ", r"absent.py"]),
    ],
    ids=["syntax-error", "raises-at-import", "raises-at-call", "not-a-list", "wrong-length", "a-string",
         "missing-function", "missing-file"],
)  # fmt: skip
def test_a_broken_reward_file_ends_the_run_with_exit_code_2_and_one_line_naming_it(tmp_path, small_model, reward, said):
    run_dir = tmp_path / "run"
    options = {**CHEAP, "model": small_model, "max_steps": 1, "output_dir": str(run_dir)}
    config = write_config(tmp_path / "run.yaml", **options, rewards=f"exact_answer, {GRPO_DATA / reward}")
    result = run_cli_in_process(config)
    assert result.returncode == 2, result.stdout[-3000:]
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr[-3000:]
    assert all(part in errors[0] for part in said), errors[0]
    if run_dir.is_dir() and (run_dir / "events.jsonl").exists():
        end = read_events(run_dir)[-1]
        assert end["type"] == "end" and end["status"] == "failed" and "\n" not in end["error"]
        assert not [e for e in read_events(run_dir) if e["type"] == "log" and e["step"] > 1]


# ---- the app: reward files only from the workspace's rewards/ folder, and only for an admin ---------------


@pytest.fixture()
def confined(tmp_path, workspace):
    """A confined manager whose workspace holds mine.py in rewards/, and a reward file outside it."""
    (workspace / "rewards").mkdir()
    shutil.copy(REWARD_FILE, workspace / "rewards" / "mine.py")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.copy(REWARD_FILE, outside / "evil.py")
    (workspace / "rewards" / "link.py").symlink_to(outside / "evil.py")
    uploads = workspace / "uploads"
    uploads.mkdir()
    shutil.copy(REWARD_FILE, uploads / "upload.py")
    jobs = JobManager(workspace, Confinement(workspace))
    yield jobs, outside
    jobs.shutdown()


def test_the_app_refuses_a_reward_file_outside_the_workspace_rewards_folder(confined, small_model):
    jobs, outside = confined
    for named in (str(outside / "evil.py"), "../outside/evil.py", "link.py", str(jobs.workspace / "uploads/upload.py")):
        with pytest.raises(TuneForgeError) as refused:
            jobs.start({**CHEAP, "model": small_model, "rewards": f"exact_answer, {named}:score"})
        assert "is outside" in one_line(refused) and "rewards" in str(refused.value)
    with pytest.raises(TuneForgeError) as refused:
        jobs.start({**CHEAP, "model": small_model, "rewards": "absent.py:score"})
    assert "rewards: no file" in one_line(refused)
    assert list(jobs.runs_dir.iterdir()) == []  # nothing was written on a refused word


def test_the_app_runs_a_reward_file_from_the_workspace_rewards_folder_by_its_short_name(confined, small_model):
    jobs, _ = confined
    mine = jobs.workspace / "rewards" / "mine.py"
    run_id = jobs.start({**CHEAP, "model": small_model, "max_steps": 1, "rewards": "mine.py:score:2, exact_answer"})
    jobs.abort(run_id)  # what the job is given is the point here, not its training
    resolved = yaml.safe_load((jobs.run_dir(run_id) / "run.yaml").read_text())
    assert resolved["rewards"] == f"{mine}:score:2, exact_answer:1"
    assert TrainConfig.from_dict(resolved).rewards == resolved["rewards"]  # the job reads back what it was given
    _, config = jobs.prepare({**CHEAP, "model": small_model, "rewards": "rewards/mine.py:score"})
    assert config.rewards == f"{mine}:score:1"


def test_in_a_studio_with_logins_only_an_admin_may_name_a_reward_file_and_only_where_code_is_allowed(workspace):
    (workspace / "rewards").mkdir()
    shutil.copy(REWARD_FILE, workspace / "rewards" / "mine.py")
    jobs = JobManager(workspace, Confinement(workspace))
    try:
        roles = {"ada": Role.ADMIN, "alice": Role.MEMBER}
        custom = {**CHEAP, "rewards": "exact_answer, mine.py:score"}
        for gate, user, message in [
            (Gate(jobs, roles, allow_remote_code=True), "alice", "rewards: only an admin may run code"),
            (Gate(jobs, roles), "ada", "rewards: this studio runs no code that is not its own"),
        ]:
            with pytest.raises(TuneForgeError) as refused:
                gate.start(user, custom)
            assert message in one_line(refused)
        assert list(jobs.runs_dir.iterdir()) == []
        allowed = Gate(jobs, roles, allow_remote_code=True)
        allowed.check_options(allowed.person("ada"), custom)
        allowed.check_options(allowed.person("alice"), {**CHEAP, "rewards": "exact_answer, regex:0.5"})
        audit = [json.loads(line) for line in (workspace / "audit.jsonl").read_text().splitlines()]
        assert [a["result"].startswith("refused: rewards") for a in audit] == [True, True]
    finally:
        jobs.shutdown()


# ---- abort and resume ---------------------------------------------------------------------------------


def test_a_grpo_run_aborted_after_a_checkpoint_resumes_and_completes(workspace, small_model):
    jobs = JobManager(workspace)
    try:
        options = {**CHEAP, "model": small_model, "rewards": f"exact_answer, {REWARD_FILE}:brevity",
                   "max_steps": 10_000, "save_steps": 1}  # fmt: skip
        run_id = jobs.start(options)
        run_dir = jobs.run_dir(run_id)
        wait_for(lambda: any(e["type"] == "checkpoint" for e in jobs.events(run_id)))
        jobs.abort(run_id)
        status = jobs.status(run_id)
        assert status["status"] == "aborted" and status["error"] == "aborted by the user"
        checkpoint, _ = pick_checkpoint(run_dir, "last")
        saved = int(checkpoint.name.split("-")[1])

        jobs.resume(run_id, {"max_steps": saved + 1})
        status = finish(jobs, run_id)
        assert status["step"] == saved + 1 and status["resumes"] == 1
        events = jobs.events(run_id)
        assert [e for e in events if e["type"] == "start"][-1]["resumed_from"] == saved
        logs = [e for e in events if e["type"] == "log"]
        assert [e["step"] for e in logs] == list(range(1, saved + 2))
        assert {"reward", "reward/exact_answer", "reward/brevity", "completion_length"} <= logs[-1].keys()
        assert json.loads((run_dir / "metrics.json").read_text())["global_step"] == saved + 1
        assert (run_dir / "adapter_model.safetensors").exists()
    finally:
        jobs.shutdown()


# ---- evaluation ---------------------------------------------------------------------------------------


def test_compare_with_base_scores_base_and_tuned_answers_with_the_runs_rewards(grpo_jobs, grpo_run):
    evaluator = Evaluator(grpo_jobs, ChatEngine(grpo_jobs))
    result = evaluator.compare_with_base(grpo_run, dataset="demo_arithmetic", max_rows=3)
    table = {row["metric"]: row for row in result["comparison"]}
    assert set(table) == {"reward", "reward/exact_answer", "reward/brevity"}
    for row in table.values():
        assert isinstance(row["base"], float) and isinstance(row["tuned"], float)
        assert row["difference"] == pytest.approx(row["tuned"] - row["base"])
    assert len(result["rows"]) == 3
    for row in result["rows"]:
        assert {"prompt", "reference", "prediction", "base_prediction", "reward", "base_reward"} <= row.keys()
        assert row["prompt"].endswith("Answer with a single number.") and row["reference"].lstrip("-").isdigit()
    tuned = result["rows"]
    assert table["reward"]["tuned"] == pytest.approx(sum(r["reward"] for r in tuned) / 3, abs=1e-3)
    assert table["reward"]["base"] == pytest.approx(sum(r["base_reward"] for r in tuned) / 3, abs=1e-3)
