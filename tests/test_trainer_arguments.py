"""What each task's trainer is told, where a library's default would otherwise decide for the user.

TRL's configs (DPOConfig, GRPOConfig, RewardConfig, ...) turn gradient checkpointing on by default, where the
studio's `gradient_checkpointing` option is off: before it was passed on, dpo, kto, orpo, grpo and rm runs
recomputed every forward pass that sft runs did not.
"""

import pytest

from backend.config import TrainConfig
from backend.events import EventLog
from backend.training.task_recipes import recipe_for

TASKS = {
    "sft": {"dataset": "demo_identity"},
    "dpo": {"task": "dpo", "dataset": "demo_preference"},
    "grpo": {"task": "grpo", "dataset": "demo_arithmetic", "per_device_train_batch_size": 4, "num_generations": 4},
    "rm": {"task": "rm", "dataset": "demo_preference"},
}


@pytest.mark.parametrize("task", sorted(TASKS))
def test_gradient_checkpointing_is_what_the_option_says_for_every_trainer(task, small_model, tmp_path):
    for asked in (False, True):
        options = {**TASKS[task], "model": small_model, "gradient_checkpointing": asked, "val_size": 0}
        run_dir = tmp_path / f"{task}-{asked}"
        config = TrainConfig.from_dict({**options, "output_dir": str(run_dir)})
        recipe = recipe_for(config, EventLog(run_dir), run_dir)
        recipe.setup()
        arguments = recipe._training_args()
        assert arguments.activation_checkpointing is asked and arguments.gradient_checkpointing is asked, (task, asked)
