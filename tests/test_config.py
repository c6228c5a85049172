"""The config dataclass is the one definition of every option; bad values are refused by name."""

import pytest

from backend.config import TrainConfig, fields
from backend.errors import TuneForgeError


def test_defaults_round_trip_through_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(TrainConfig().to_yaml(), encoding="utf-8")
    assert TrainConfig.from_yaml(path) == TrainConfig()


def test_yaml_keys_follow_training_arguments_and_llamafactory():
    names = {f.name for f in fields()}
    expected = {
        "model", "dataset", "task", "method", "output_dir", "learning_rate", "num_train_epochs", "max_steps",
        "per_device_train_batch_size", "gradient_accumulation_steps", "lr_scheduler_type", "warmup_ratio",
        "weight_decay", "max_grad_norm", "logging_steps", "save_steps", "eval_steps", "val_size", "seed",
        "cutoff_len", "lora_rank", "lora_alpha", "lora_dropout", "lora_target",
    }  # fmt: skip
    assert expected <= names


def test_every_option_has_help_and_numbers_have_bounds():
    for f in fields():
        assert f.metadata["help"], f.name
        if f.type in ("int", "float"):
            assert f.metadata["min"] is not None and f.metadata["max"] is not None, f.name


def test_unknown_key_is_refused_with_a_suggestion():
    with pytest.raises(TuneForgeError, match=r"unknown option 'lerning_rate' \(did you mean 'learning_rate'\?\)"):
        TrainConfig.from_dict({"lerning_rate": 1e-4})


@pytest.mark.parametrize(
    "options, message",
    [
        ({"learning_rate": 5.0}, r"learning_rate=5.0 is out of range"),
        ({"lora_rank": 0}, r"lora_rank=0 is out of range"),
        ({"per_device_train_batch_size": 2.5}, r"per_device_train_batch_size must be a whole number"),
        ({"method": "dora"}, r"method='dora' is not one of: lora, qlora, full, freeze"),
        ({"quantization_bit": 3}, r"quantization_bit=3 is not one of: 0, 4, 8"),
        ({"strategy": "horovod"}, r"strategy='horovod' is not one of: ddp, fsdp, deepspeed_zero2, deepspeed_zero3"),
        ({"num_train_epochs": "many"}, r"num_train_epochs must be a number"),
        ({"seed": True}, r"seed must be a whole number"),
        ({"learning_rate": float("nan")}, r"learning_rate must be a number"),
    ],
)
def test_bad_values_name_the_key(options, message):
    with pytest.raises(TuneForgeError, match=message):
        TrainConfig.from_dict(options)


def test_yaml_scientific_notation_without_dot_is_a_number(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 2e-4\nmax_steps: 10\n", encoding="utf-8")
    config = TrainConfig.from_yaml(path)
    assert config.learning_rate == pytest.approx(2e-4) and config.max_steps == 10


def test_invalid_yaml_is_located(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("learning_rate: 1e-4\nmethod: [lora\n", encoding="utf-8")
    with pytest.raises(TuneForgeError, match=r"line \d+: invalid YAML"):
        TrainConfig.from_yaml(path)


def test_yaml_that_is_not_a_mapping_is_refused(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("- learning_rate\n", encoding="utf-8")
    with pytest.raises(TuneForgeError, match="expected a mapping"):
        TrainConfig.from_yaml(path)


def test_classification_gets_its_own_learning_rate_unless_one_is_given():
    assert TrainConfig.from_dict({"task": "classification"}).learning_rate == 5e-4
    assert TrainConfig.from_dict({"task": "classification", "learning_rate": 1e-4}).learning_rate == 1e-4
    assert TrainConfig.from_dict({}).learning_rate == 2e-4


def test_a_task_switch_moves_only_the_options_still_at_the_previous_tasks_default():
    """The form's follower (webui/tab_dataset.py). A learning rate the person typed stays, even one that equals
    another task's default: a late switch from sft once replaced a typed 5e-4, classification's default."""
    from webui.tab_dataset import TASK_FOLLOWERS, follow_task_defaults

    names = [f.name for f in TASK_FOLLOWERS]
    assert names == ["dataset", "learning_rate", "max_steps", "per_device_train_batch_size", "lr_scheduler_type",
                     "pref_loss"]  # fmt: skip
    sft = {"dataset": "demo_identity", "learning_rate": 2e-4, "max_steps": -1, "per_device_train_batch_size": 4,
           "lr_scheduler_type": "cosine", "pref_loss": "sigmoid"}  # fmt: skip

    def switch(previous, task, **typed):
        *values, now = follow_task_defaults(previous, task, *{**sft, **typed}.values())
        return dict(zip(names, values, strict=True)), now

    moved, previous = switch("sft", "classification")
    assert (moved["learning_rate"], previous) == (5e-4, "classification")
    # A default both tasks share is not sent: a demo dataset picked just before the switch must not be undone.
    assert moved["pref_loss"] == {"__type__": "update"}
    moved, _ = switch("sft", "dpo")
    assert moved["dataset"] == {"__type__": "update"}
    moved, previous = switch("sft", "kto", learning_rate=5e-4)
    assert moved["learning_rate"] == {"__type__": "update"} and moved["pref_loss"] == "kto" and previous == "kto"
    moved, _ = switch("classification", "sft", learning_rate=5e-4)
    assert moved["learning_rate"] == 2e-4  # classification's default, left as it was: it goes back to sft's
    # grpo's demo: its prompt set, a few dozen steps of 8 completions at a constant 1e-3; a typed dataset stays.
    moved, _ = switch("sft", "grpo", dataset="mine.jsonl")
    assert moved["dataset"] == {"__type__": "update"}
    assert [moved[k] for k in names[1:5]] == [1e-3, 30, 8, "constant"]
