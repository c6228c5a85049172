"""Which recipe trains which task: the one dispatch that the job's entry point and the speed trial share.

It lives inside the job's package, not in backend.train, so that nothing in backend.training imports the entry point.
"""

from __future__ import annotations

from pathlib import Path

from backend.config import PREFERENCE_TASKS, TrainConfig
from backend.events import EventLog


def recipe_for(config: TrainConfig, events: EventLog, run_dir: Path, resume_from: Path | None = None):
    """The task's recipe; each family's module (and its trainer library) is imported only when asked for."""
    from backend.models.vision import is_vision_spec

    if is_vision_spec(config.model):  # its own recipe, which refuses the tasks it cannot train
        from backend.training.vision import VisionRecipe as recipe
    elif config.task in PREFERENCE_TASKS:
        from backend.training.preference import PreferenceRecipe as recipe
    elif config.task == "classification":
        from backend.training.classification import ClassificationRecipe as recipe
    elif config.task == "grpo":
        from backend.training.grpo import GRPORecipe as recipe
    elif config.task == "rm":
        from backend.training.reward_model import RewardModelRecipe as recipe
    else:
        from backend.training.sft import SftRecipe as recipe
    return recipe(config, events, run_dir, resume_from)
