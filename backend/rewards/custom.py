"""Your own reward: a function in a Python file, loaded and checked so that its mistakes read as one line.

It is called as function(completions=[str, ...], prompts=[str, ...], **references), where each reference
column of the dataset (answer, solution, ...) is a list beside the completions, and must return one
number (or None, for "no opinion") per completion. An import error, an exception or a wrong return is
reported with the file and, where there is one, the line in it.
"""

from __future__ import annotations

import importlib.util
import math
import numbers
import sys
import traceback
from collections.abc import Callable
from pathlib import Path

from backend.errors import TuneForgeError
from backend.rewards.reward_spec import RewardSpec


def load_reward(spec: RewardSpec) -> Callable:
    path = Path(spec.path).expanduser().resolve()
    if not path.is_file():
        raise TuneForgeError(f"reward file not found: {spec.path}")
    module_name = f"tuneforge_reward_{abs(hash(str(path)))}"
    loader = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(loader)
    try:
        loader.loader.exec_module(module)
    except SyntaxError as exc:
        raise TuneForgeError(f"{path} line {exc.lineno}: SyntaxError: {exc.msg}") from None
    except Exception as exc:  # noqa: BLE001 - any failure of the user's module is reported, located
        raise TuneForgeError(f"{located(path, exc)}: {type(exc).__name__} while importing: {exc}") from None
    function = getattr(module, spec.name, None)
    if not callable(function):
        raise TuneForgeError(f"{path}: no function named {spec.name!r}")
    sys.modules[module_name] = module
    return function


def call_reward(function: Callable, spec: RewardSpec, completions: list[str], prompts: list[str], references) -> list:
    path = Path(spec.path).expanduser().resolve()
    try:
        result = function(completions=completions, prompts=prompts, **references)
    except Exception as exc:  # noqa: BLE001 - the user's code may raise anything; the run ends in one line
        raise TuneForgeError(f"reward {spec.name} failed: {located(path, exc)}: {type(exc).__name__}: {exc}") from None
    return checked(result, spec, len(completions))


def checked(result, spec: RewardSpec, expected: int) -> list[float | None]:
    """One finite number or None per completion, or one line saying what came back instead."""
    where = f"reward {spec.name} ({spec.path})"
    if not isinstance(result, (list, tuple)):
        raise TuneForgeError(f"{where} returned {type(result).__name__}; it must return a list of numbers")
    if len(result) != expected:
        raise TuneForgeError(f"{where} returned {len(result)} values for {expected} completions; return one each")
    for value in result:
        if value is None:
            continue
        # numbers.Real takes numpy's scalars too (a reward built with numpy returns np.float32); not its bool_.
        if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
            raise TuneForgeError(f"{where} returned {value!r} among its rewards; each must be a finite number")
    return [None if v is None else float(v) for v in result]


def located(path: Path, exc: BaseException) -> str:
    """'file line N' for the deepest frame of the traceback that is in the reward's file."""
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if Path(f.filename).resolve() == path]
    return f"{path} line {frames[-1].lineno}" if frames else str(path)
