"""Each fact lives in one place, and what reads it follows it.

An option's facts (a path, locked on resume, on the model card, never searched) are its config field's
metadata; each task's metrics and their directions are one table (backend.task_metrics); every default
that a view of the config, a tab or an endpoint shows is the config's or the engine's own. Each check below
walks the source of the fact, so a new option, task or default is covered the day it is added.
"""

import ast
import dataclasses
import importlib
import inspect

import pytest

from backend.access.confine import Confinement
from backend.access.limits import CHAT_DEFAULTS
from backend.checkpoints import check_compatible
from backend.config import TrainConfig, fields, options_where
from backend.errors import TuneForgeError
from backend.rewards.builtin import READS, RewardSettings
from backend.serving.gguf_bundle import gguf_facts
from backend.sweeps.sweep_spec import SweepSpec, parse_spec
from backend.task_metrics import TASK_METRICS, best_model_choices, greater_is_better, headline, metric_names
from tests.helpers import ROOT

FIELDS = {f.name: f for f in fields()}
CONFIG_DEFAULTS = {f.name: f.default for f in fields()}


def a_different_value(name: str):
    f = FIELDS[name]
    if f.metadata["choices"]:
        return next(c for c in f.metadata["choices"] if c != f.default)
    changed = {"bool": lambda v: not v, "int": lambda v: v + 1, "float": lambda v: v + 0.5, "str": lambda v: v + "-x"}
    return changed[f.type](f.default)


@pytest.mark.parametrize("name", options_where("path"))
def test_every_option_marked_a_path_is_checked_by_the_confinement(name, tmp_path):
    config = TrainConfig(**{name: "runs/\0x"})  # unchecked, as a caller's raw word would be
    with pytest.raises(TuneForgeError, match=f"{name} contains a NUL byte"):
        Confinement(tmp_path).options(config)


def test_changing_a_locked_option_refuses_the_resume_and_changing_another_does_not():
    previous = TrainConfig().to_dict()
    for name in options_where("locked"):
        with pytest.raises(TuneForgeError, match=f"cannot resume: {name} was"):
            check_compatible(previous, {**previous, name: a_different_value(name)})
    for name in set(FIELDS) - set(options_where("locked")):
        check_compatible(previous, {**previous, name: a_different_value(name)})


def test_the_gguf_metadata_lists_every_card_option_and_no_other():
    listed = gguf_facts("run", TrainConfig().to_dict())["finetune"]
    assert [item.split("=")[0] for item in listed.split(", ")] == list(options_where("card"))


@pytest.mark.parametrize("name", options_where("not_searched"))
def test_a_sweep_refuses_to_search_an_option_marked_not_searched_saying_why(name):
    reason = FIELDS[name].metadata["not_searched"]
    with pytest.raises(TuneForgeError, match=f"space: {name} cannot be searched: {reason}"):
        parse_spec({"space": {name: [a_different_value(name)]}})


def test_a_sweep_refuses_to_search_an_option_its_task_never_reads():
    for name in (f.name for f in fields() if f.metadata["tasks"]):
        applies = FIELDS[name].metadata["tasks"]
        other = next(task for task in ("sft", "grpo") if task not in applies)
        with pytest.raises(TuneForgeError, match=f"space: {name} does not apply to task {other} "):
            parse_spec({"base": {"task": other}, "space": {name: [a_different_value(name)]}})
    spec = parse_spec({"base": {"task": "dpo"}, "space": {"pref_beta": [0.1, 0.2]}})
    assert spec.space == {"pref_beta": [0.1, 0.2]}


def test_every_task_has_its_metrics_and_metric_for_best_model_offers_each_of_them():
    assert set(FIELDS["task"].metadata["choices"]) == set(TASK_METRICS)
    assert set(FIELDS["metric_for_best_model"].metadata["choices"]) == set(best_model_choices())
    for task in ("sft", "classification", "grpo", "rm"):
        for metric in best_model_choices(task):
            TrainConfig.from_dict({"task": task, "metric_for_best_model": metric})
    with pytest.raises(TuneForgeError, match=r"'accuracy' does not apply to task grpo \(use eval_loss, eval_reward\)"):
        TrainConfig.from_dict({"task": "grpo", "metric_for_best_model": "accuracy"})


def test_a_sweep_without_a_direction_optimises_each_metric_the_way_the_table_says():
    for task in ("sft", "classification", "dpo", "grpo", "rm"):
        for metric in metric_names(task):
            spec = parse_spec({"base": {"task": task}, "space": {"seed": [1, 2]}, "metric": metric})
            assert spec.direction == ("maximize" if greater_is_better(task, metric) else "minimize"), (task, metric)
    assert not greater_is_better("dpo", "rewards/rejected")  # the rejected answers' reward should fall


def test_the_runs_list_headline_is_the_tasks_own_metric():
    grpo = {"eval_loss": 0.5, "eval_reward": 0.75, "reward": 0.25}  # held-out, and the last logged
    assert headline("grpo", grpo) == "eval_reward 0.7500"  # it showed eval_loss before the table
    assert headline("classification", {"eval_loss": 0.5, "accuracy": 0.9}) == "accuracy 0.9000"
    assert headline("rm", {"eval_loss": 0.5, "eval_accuracy": 0.8}) == "eval_accuracy 0.8000"
    dpo = {"eval_loss": 0.5, "rewards/accuracies": 0.6, "eval_rewards/accuracies": 0.7}
    assert headline("dpo", dpo) == "eval_rewards/accuracies 0.7000"
    assert headline("dpo", {"eval_loss": 0.5}) == headline("sft", {"eval_loss": 0.5}) == "eval_loss 0.5000"


def test_a_sweep_scores_a_trial_by_the_held_out_value_the_runs_list_shows():
    from backend.sweeps.driver import final_value

    end = {"eval_loss": 0.5, "rewards/accuracies": 0.6, "eval_rewards/accuracies": 0.7, "reward": 0.2}
    assert final_value(end, [], "rewards/accuracies") == 0.7  # it took the training batch's 0.6
    assert final_value(end, [], "eval_loss") == 0.5
    assert final_value(end, [{"type": "eval", "reward": 0.4}], "reward") == 0.2  # no held-out value at the end
    assert final_value({"eval_reward": float("nan"), "reward": 0.3}, [], "reward") == 0.3


def config_views():
    """Every backend class with a from_config: a view of TrainConfig whose defaults must be the config's."""
    for path in sorted((ROOT / "backend").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.ClassDef) and any(
                isinstance(item, ast.FunctionDef) and item.name == "from_config" for item in node.body
            ):
                module = ".".join(path.relative_to(ROOT).with_suffix("").parts).removesuffix(".__init__")
                yield getattr(importlib.import_module(module), node.name)


def test_every_view_of_the_config_defaults_to_the_configs_values():
    views = list(config_views())
    assert {view.__name__ for view in views} >= {"DataOptions", "RewardSettings"}
    for view in views:
        for f in dataclasses.fields(view):
            if f.name in CONFIG_DEFAULTS and f.default is not dataclasses.MISSING:
                assert f.default == CONFIG_DEFAULTS[f.name], f"{view.__name__}.{f.name}: {f.default!r}"


def test_each_built_in_reward_reads_only_reward_settings_the_config_has():
    read = {name for settings, _ in READS.values() for name in settings}
    assert read == {f.name for f in dataclasses.fields(RewardSettings)}
    assert all(FIELDS[name].metadata["group"] == "rewards" for name in read)


@pytest.fixture(scope="module")
def blocks(tmp_path_factory):
    """The Chat and Sweeps tabs and the chat endpoint, built as the app builds them (the whole app costs more)."""
    import gradio as gr

    from backend.access.gate import Gate
    from backend.evaluation.evaluate import Evaluator
    from backend.runs.job_manager import JobManager
    from backend.serving.chat import ChatEngine
    from backend.serving.export import Exporter
    from backend.sweeps.sweep_manager import SweepManager
    from webui.api import register_api
    from webui.context import AppContext
    from webui.tab_chat import ChatTab
    from webui.tab_sweeps import SweepsTab

    jobs = JobManager(tmp_path_factory.mktemp("workspace"))
    chat, gate = ChatEngine(jobs), Gate(jobs)
    try:
        with gr.Blocks() as blocks:
            ctx = AppContext(jobs=jobs, chat=chat, blocks=blocks, sweeps=SweepManager(jobs), gate=gate)
            ChatTab(ctx).build()
            SweepsTab(ctx).build()
            register_api(gate, chat, Evaluator(jobs, chat), Exporter(jobs))
        yield blocks
    finally:
        jobs.shutdown()


def component(blocks, elem_id):
    return next(b for b in blocks.blocks.values() if getattr(b, "elem_id", None) == elem_id)


def test_the_chat_tab_the_chat_endpoint_and_the_engine_start_from_the_same_settings(blocks):
    from backend.serving.chat import ChatEngine

    engine = inspect.signature(ChatEngine.stream).parameters
    endpoint = next(fn for fn in blocks.fns.values() if fn.api_name == "chat")
    api = inspect.signature(endpoint.fn).parameters
    for name, elem_id in (("temperature", "chat-temperature"), ("top_p", "chat-top-p"), ("max_new_tokens", None)):
        elem_id = elem_id or "chat-max-new-tokens"
        assert engine[name].default == api[name].default == component(blocks, elem_id).value == CHAT_DEFAULTS[name]


def test_the_sweeps_form_starts_where_a_spec_that_names_nothing_does(blocks):
    spec = parse_spec({"space": {"seed": [1, 2]}})
    assert component(blocks, "sweep-sampler").value == spec.sampler == SweepSpec.sampler
    assert component(blocks, "sweep-pruner").value == spec.pruner
    assert component(blocks, "sweep-metric").value == spec.metric


def test_the_lists_of_option_names_that_remain_outside_the_config_name_only_its_options():
    """These lists say what their own module does with some options (what the ETA's cache, the memory estimate
    and the dataset preview follow; what LLaMA-Factory reads alike). A renamed option must not leave them stale."""
    from backend.config import ADAPTER_VARIANTS
    from backend.data import MAPPING_OPTIONS
    from backend.llamafactory import SAME_KEYS
    from backend.runs.compare import IGNORED_OPTIONS
    from backend.runs.speed import SPEED_SETTINGS
    from webui.fit_view import FIT_TRIGGERS
    from webui.tab_dataset import DATA_TRIGGERS

    for names in (ADAPTER_VARIANTS, MAPPING_OPTIONS, SAME_KEYS, IGNORED_OPTIONS, SPEED_SETTINGS, FIT_TRIGGERS):
        assert set(names) <= set(FIELDS), set(names) - set(FIELDS)
    assert set(DATA_TRIGGERS) <= set(FIELDS), set(DATA_TRIGGERS) - set(FIELDS)
    # The data pipeline cannot import the config (the config imports it); its column roles are the column options.
    assert set(MAPPING_OPTIONS) == {f.name for f in fields() if f.metadata["widget"] == "column"}
