"""The `rewards` option: "exact_answer, regex:0.5, my_rewards.py:brevity" → named, weighted rewards.

A name is a built-in (exact_answer, regex, length, json, keywords), `path/to/file.py:function`, or
`rm:<reward-model run>` (a task rm run: its id in the app, its folder from the CLI), and an optional
weight follows the last colon. Parsing imports nothing, so the app can check a config before any job
starts; loading a custom reward's file is backend.rewards.custom's job, and loading a reward model
backend.rewards.learned's.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

from backend.errors import TuneForgeError
from backend.rewards.builtin import BUILT_INS

BUILT_IN_REWARDS = tuple(BUILT_INS)
LEARNED = "rm"  # a reward model's score: logged as reward/rm
_WEIGHT = re.compile(r"^(?P<name>.+?)\s*:\s*(?P<weight>[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?)$")
_NUMBER = re.compile(r"^[-+]?(\d+(\.\d*)?|\.\d+)([eE][-+]?\d+)?$")


@dataclass(frozen=True)
class RewardSpec:
    name: str  # the built-in's name or the custom function's: what reward/<name> is logged as
    weight: float = 1.0
    path: str = ""  # a custom reward's file; empty for a built-in
    model: str = ""  # a learned reward's rm run (its id or folder); empty otherwise

    @property
    def custom(self) -> bool:
        return bool(self.path)

    @property
    def learned(self) -> bool:
        return bool(self.model)


def parse_rewards(spec: str) -> list[RewardSpec]:
    """The rewards named in `spec`, or one line saying which part is wrong.

    The config's check, the confinement, the gate (through the config's runs_code), the job and the evaluator
    all ask this of the same string: it is parsed once and each gets the same RewardSpecs."""
    return list(_parsed(spec))


@functools.lru_cache(maxsize=64)
def _parsed(spec: str) -> tuple[RewardSpec, ...]:
    parsed = [_one(part.strip()) for part in spec.split(",") if part.strip()]
    if not parsed:
        raise TuneForgeError(
            f"rewards is empty; name at least one of {', '.join(BUILT_IN_REWARDS)}, file.py:function or rm:<run>"
        )
    names = [r.name for r in parsed]
    twice = next((n for n in names if names.count(n) > 1), None)
    if twice:
        raise TuneForgeError(f"rewards names {twice!r} twice; give each reward once, with a weight if needed")
    return tuple(parsed)


def _one(part: str) -> RewardSpec:
    if part == LEARNED or part.startswith(LEARNED + ":"):
        return _learned(part)
    weight = 1.0
    match = _WEIGHT.match(part)
    if match:
        part, weight = match["name"], float(match["weight"])
    if part in BUILT_IN_REWARDS:
        return RewardSpec(part, weight)
    path, colon, function = part.rpartition(":")
    if colon and path.endswith(".py") and function.isidentifier():
        return RewardSpec(function, weight, path)
    raise TuneForgeError(
        f"rewards: unknown reward {part!r} (use {', '.join(BUILT_IN_REWARDS)}, path/to/file.py:function or "
        "rm:<run>, each with an optional :weight)"
    )


def _learned(part: str) -> RewardSpec:
    """rm:<run>[:weight]; the weight is the last colon's number only where a run is left before it."""
    target, weight = part[len(LEARNED) + 1 :].strip(), 1.0
    head, colon, tail = target.rpartition(":")
    if colon and head.strip() and _NUMBER.match(tail.strip()):
        target, weight = head.strip(), float(tail)
    if not target or _NUMBER.match(target):  # rm:0.5 is a weight with no run before it
        raise TuneForgeError(
            "rewards: rm needs a reward-model run: rm:<run id> in the app, rm:<run folder> from the CLI"
        )
    return RewardSpec(LEARNED, weight, model=target)
