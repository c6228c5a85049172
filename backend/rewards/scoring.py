"""A run's rewards, ready to score: built-ins with their settings, custom functions loaded and checked,
and a reward model (rm:<run>) loaded once.

Training (backend.training.grpo) hands each reward to TRL's GRPOTrainer; the evaluator scores held-out
completions with the same objects, so a reward means the same thing in both.
"""

from __future__ import annotations

from collections.abc import Callable

from backend.data.prompts import reference_columns
from backend.rewards.builtin import BUILT_INS, RewardSettings, schema_validator
from backend.rewards.custom import call_reward, load_reward
from backend.rewards.learned import LearnedReward
from backend.rewards.reward_spec import RewardSpec, parse_rewards


class RewardSet:
    def __init__(self, config):
        self.specs: list[RewardSpec] = parse_rewards(config.rewards)
        self.settings = RewardSettings.from_config(config)
        self._custom: dict[str, Callable] = {s.name: load_reward(s) for s in self.specs if s.custom}
        self._learned = {s.name: LearnedReward(s.model) for s in self.specs if s.learned}
        if "json" in self.names:
            schema_validator(self.settings.reward_json_schema)  # a bad schema fails here, before any model loads

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.specs]

    @property
    def weights(self) -> list[float]:
        return [s.weight for s in self.specs]

    def score(
        self, spec: RewardSpec, completions: list[str], prompts: list[str], references: dict, dialogues=None
    ) -> list:
        """One value (a float, or None from a custom reward with no opinion) per completion.

        dialogues: each completion's whole prompt as messages, which a reward model reads (else the prompt text).
        """
        if spec.learned:
            return self._learned[spec.name](completions, dialogues or prompts)
        if spec.custom:
            return call_reward(self._custom[spec.name], spec, completions, prompts, references)
        return BUILT_INS[spec.name](completions, references, self.settings)

    def score_all(
        self, completions: list[str], prompts: list[str], references: dict, dialogues=None
    ) -> dict[str, list]:
        """Every component per completion, and 'reward': their weighted sum (a None counts as 0)."""
        scores = {s.name: self.score(s, completions, prompts, references, dialogues) for s in self.specs}
        by_completion = [{name: values[i] for name, values in scores.items()} for i in range(len(completions))]
        scores["reward"] = [self.total(scored) for scored in by_completion]
        return scores

    def total(self, scored: dict[str, float | None]) -> float:
        """One completion's weighted sum of its rewards by name, as TRL weighs them (a None counts as 0)."""
        return sum(s.weight * (scored.get(s.name) or 0.0) for s in self.specs)


def references_of(examples: list[dict]) -> dict[str, list]:
    """The examples' reference columns as lists beside them (None where a row lacks one)."""
    return {k: [e.get("references", {}).get(k) for e in examples] for k in reference_columns(examples)}
