"""A sweep's spec: a base training config, a search space over its options, and how to search it.

    base       a training config, the keys of train_start
    space      {option: [values]} (a grid, or choices) or {option: {low, high, log}} (a range)
    sampler    grid (every combination, in the order written), random or tpe (Optuna's samplers)
    n_trials   how many trials; a grid runs at most its own size (default: all of it; else 8, or the
               number of combinations when every option searched is a list and they are fewer: random
               and tpe would only repeat a run; an n_trials given is kept)
    metric     what the trials are judged by, as the runs report it: eval_loss, accuracy, rewards/margins, ...
    direction  minimize or maximize (default: minimize for a loss, maximize for anything else)
    pruner     median (stop a trial whose eval is worse than the median of earlier trials' at the
               same step) or none; pruner_startup_trials: trials that finish before any is pruned;
               pruner_margin: how much worse, relative to that median, counts as clearly worse
    name       the sweep's id (default: a new one); a sweep given the name of one already in the
               storage joins it, so several machines can work on one study
    seed       the sampler's seed

Every refusal is one line that names the key, and comes before any trial starts: a sweep that
would fail in its fifth trial because of a value out of bounds fails now instead.
"""

from __future__ import annotations

import difflib
import itertools
import math
import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from backend.config import TrainConfig, fields
from backend.errors import TuneForgeError
from backend.task_metrics import greater_is_better, metric_names

SAMPLERS = ("grid", "random", "tpe")
DIRECTIONS = ("minimize", "maximize")
PRUNERS = ("median", "none")
MAX_TRIALS = 1000
DEFAULT_TRIALS = 8
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")
KEYS = (
    "base", "space", "sampler", "n_trials", "metric", "direction", "pruner", "pruner_startup_trials",
    "pruner_margin", "name", "seed",
)  # fmt: skip
RANGE_KEYS = ("low", "high", "log")


@dataclass
class Range:
    low: float
    high: float
    log: bool = False


@dataclass
class SweepSpec:
    base: dict[str, Any]
    space: dict[str, list | Range]
    sampler: str = "tpe"
    n_trials: int = DEFAULT_TRIALS
    metric: str = "eval_loss"
    direction: str = "minimize"
    pruner: str = "median"
    pruner_startup_trials: int = 2
    pruner_margin: float = 0.01
    name: str = ""
    seed: int = 42
    kinds: dict[str, str] = field(default_factory=dict)  # option -> int | float | str | bool

    def to_dict(self) -> dict[str, Any]:
        """The spec as a sweep.yaml (and the API) writes it."""
        raw = asdict(self)
        raw.pop("kinds")
        return raw

    def grid(self) -> list[dict[str, Any]]:
        """Every combination of the listed values, the first option varying slowest."""
        names = list(self.space)
        return [dict(zip(names, values, strict=True)) for values in itertools.product(*self.space.values())]

    def trial_options(self, params: dict[str, Any]) -> dict[str, Any]:
        return {**self.base, **params}


def new_sweep_id() -> str:
    return time.strftime("sweep-%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def parse_spec(raw: Any) -> SweepSpec:
    """A validated spec, or a TuneForgeError naming what is wrong in one line."""
    if not isinstance(raw, dict):
        raise TuneForgeError(f"a sweep spec is a mapping of {', '.join(KEYS)}; got {type(raw).__name__}")
    for key in raw:
        if key not in KEYS:
            hint = difflib.get_close_matches(str(key), KEYS, n=1)
            raise TuneForgeError(f"unknown sweep key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
    base = raw.get("base") or {}
    if not isinstance(base, dict):
        raise TuneForgeError(f"base: a training config (option: value), got {type(base).__name__}")
    config = _checked(base, "base")
    spec = SweepSpec(base=dict(base), space={})  # its defaults are the spec's: each key below falls back to one
    spec.sampler = _choice(raw, "sampler", SAMPLERS, spec.sampler)
    spec.space, spec.kinds = _space(raw.get("space"), base, spec.sampler, config.task)
    spec.metric = _metric(raw.get("metric", spec.metric), config)
    better = "maximize" if greater_is_better(config.task, spec.metric) else "minimize"
    spec.direction = _choice(raw, "direction", DIRECTIONS, better)
    spec.pruner = _choice(raw, "pruner", PRUNERS, spec.pruner)
    spec.pruner_startup_trials = _whole(raw, "pruner_startup_trials", spec.pruner_startup_trials, 0, MAX_TRIALS)
    spec.pruner_margin = _share(raw, "pruner_margin", spec.pruner_margin)
    spec.seed = _whole(raw, "seed", spec.seed, 0, 2**31 - 1)
    spec.n_trials = _trials(raw, spec)
    spec.name = _name(raw.get("name"))
    return spec


def _checked(options: dict[str, Any], where: str) -> TrainConfig:
    try:
        return TrainConfig.from_dict(options)
    except TuneForgeError as exc:
        raise TuneForgeError(f"{where}: {exc}") from None


def _choice(raw: dict, key: str, allowed: tuple[str, ...], default: str) -> str:
    value = raw.get(key) or default
    if value not in allowed:
        raise TuneForgeError(f"{key}: {value!r} is not one of {', '.join(allowed)}")
    return value


def _whole(raw: dict, key: str, default: int, low: int, high: int) -> int:
    value = raw.get(key, default)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise TuneForgeError(f"{key}: a whole number from {low} to {high}, got {value!r}")
    return value


def _share(raw: dict, key: str, default: float) -> float:
    value = raw.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
        raise TuneForgeError(f"{key}: a number from 0 to 1, got {value!r}")
    return float(value)


def _name(value: Any) -> str:
    if value in (None, ""):
        return ""
    if not isinstance(value, str) or not NAME.fullmatch(value):
        raise TuneForgeError(
            f"name: {value!r} is not a sweep name (letters, digits, '.', '_' and '-', at most 100, not starting "
            "with a dot or a dash)"
        )
    return value


def _space(raw: Any, base: dict[str, Any], sampler: str, task: str) -> tuple[dict[str, list | Range], dict[str, str]]:
    if not isinstance(raw, dict) or not raw:
        raise TuneForgeError("space: name at least one option to search, as option: [values] or option: {low, high}")
    known = {f.name: f for f in fields()}
    space, kinds = {}, {}
    for name, values in raw.items():
        if name not in known:
            hint = difflib.get_close_matches(str(name), known, n=1)
            raise TuneForgeError(f"space: unknown option '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else ""))
        if known[name].metadata["not_searched"]:
            raise TuneForgeError(f"space: {name} cannot be searched: {known[name].metadata['not_searched']}")
        applies = known[name].metadata["tasks"]
        if applies and task not in applies:
            raise TuneForgeError(
                f"space: {name} does not apply to task {task} (only {', '.join(applies)}): every trial would be "
                "the same run"
            )
        kinds[name] = known[name].type
        if isinstance(values, dict):
            if sampler == "grid":
                raise TuneForgeError(
                    f"space.{name}: the grid sampler needs a list of values; a range needs sampler random or tpe"
                )
            space[name] = _range(name, values, known[name].type, base)
        elif isinstance(values, list):
            space[name] = _values(name, values, base)
        else:
            raise TuneForgeError(f"space.{name}: a list of values or a range {{low, high, log}}, got {values!r}")
    return space, kinds


def _values(name: str, values: list, base: dict[str, Any]) -> list:
    if not values:
        raise TuneForgeError(f"space.{name}: an empty list of values; give at least one")
    checked = []
    for value in values:
        # Through the option's own check: its bounds, its choices, and how it combines with the base.
        checked.append(getattr(_checked({**base, name: value}, "space"), name))
    if len(set(map(repr, checked))) < len(checked):
        raise TuneForgeError(f"space.{name}: a value is listed twice in {values!r}")
    return checked


def _range(name: str, raw: dict, kind: str, base: dict[str, Any]) -> Range:
    unknown = [key for key in raw if key not in RANGE_KEYS]
    if unknown:
        raise TuneForgeError(f"space.{name}: unknown range key '{unknown[0]}' (a range has low, high and log)")
    if kind not in ("int", "float"):
        raise TuneForgeError(f"space.{name}: a range needs a numeric option; {name} takes a list of values")
    if "low" not in raw or "high" not in raw:
        raise TuneForgeError(f"space.{name}: a range needs both low and high")
    low, high = (getattr(_checked({**base, name: raw[key]}, "space"), name) for key in ("low", "high"))
    log = raw.get("log", False)
    if not isinstance(log, bool):
        raise TuneForgeError(f"space.{name}: log must be true or false, got {log!r}")
    if not low < high:
        raise TuneForgeError(f"space.{name}: an empty range (low {low} is not below high {high})")
    if log and low <= 0:
        raise TuneForgeError(f"space.{name}: a log range needs low > 0, got {low}")
    return Range(low=low, high=high, log=log)


def _metric(metric: Any, config: TrainConfig) -> str:
    known = metric_names(config.task)
    name = str(metric)
    if name not in known and f"eval_{name}" in known:
        name = f"eval_{name}"  # an rm run's accuracy, named as its eval events name it
    if name not in known and name.removeprefix("eval_") in known:
        name = name.removeprefix("eval_")  # eval_accuracy, as Trainer names it, is our accuracy
    if name not in known:
        raise TuneForgeError(f"metric: task {config.task} runs report {', '.join(known)}; not {metric!r}")
    if not config.val_size and not config.eval_dataset:
        raise TuneForgeError(
            f"metric: {name} is measured on a validation set; set val_size (e.g. 0.1) or eval_dataset in base"
        )
    return name


def _trials(raw: dict, spec: SweepSpec) -> int:
    lists = all(isinstance(values, list) for values in spec.space.values())
    size = math.prod(len(values) for values in spec.space.values()) if lists else None
    if spec.sampler != "grid":
        return _whole(raw, "n_trials", min(spec.n_trials, size or spec.n_trials), 1, MAX_TRIALS)
    if size > MAX_TRIALS:
        raise TuneForgeError(f"space: the grid has {size} combinations; at most {MAX_TRIALS}")
    for params in spec.grid():  # options that are fine alone may not combine (pissa_init with use_dora)
        _checked(spec.trial_options(params), f"space {params}")
    return min(_whole(raw, "n_trials", size, 1, MAX_TRIALS), size)
