"""Checkpoints, shared by the job (which resumes from one) and the app (which checks a resume before it starts it).

Resuming a run from its checkpoints: which checkpoint, and whether the new config still fits it.

A checkpoint is transformers' `checkpoint-<step>/` folder (weights or adapter, optimizer,
scheduler, RNG and trainer_state.json). A crash or full disk while saving can leave the newest
one half-written, so 'last' means the newest checkpoint that is complete, and a damaged one is
named rather than loaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from backend.config import options_where
from backend.errors import TuneForgeError

# Changing any of these makes the saved weights or optimizer state meaningless for the new run (backend.config
# marks them locked, and says why there).
LOCKED_KEYS = options_where("locked")
WEIGHT_FILES = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json")
CHECKPOINT_PREFIX = "checkpoint-"


def checkpoints(run_dir: Path) -> list[Path]:
    """A run's checkpoint folders, oldest first."""
    found = [p for p in Path(run_dir).glob(f"{CHECKPOINT_PREFIX}*") if p.is_dir()]
    return sorted((p for p in found if p.name.removeprefix(CHECKPOINT_PREFIX).isdigit()), key=checkpoint_step)


def checkpoint_step(path: Path) -> int:
    return int(Path(path).name.removeprefix(CHECKPOINT_PREFIX))


def damage(checkpoint: Path) -> str | None:
    """Why a checkpoint cannot be resumed from, or None when it looks whole."""
    state = checkpoint / "trainer_state.json"
    try:
        json.loads(state.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return "trainer_state.json is missing"
    except (json.JSONDecodeError, UnicodeDecodeError, OSError):
        return "trainer_state.json is not valid JSON"
    weights = next((checkpoint / name for name in WEIGHT_FILES if (checkpoint / name).exists()), None)
    if weights is None:
        return "it holds no weights"
    if weights.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(weights), framework="pt") as f:
                f.keys()
        except (SafetensorError, OSError, ValueError) as exc:
            return f"{weights.name} is damaged ({str(exc).splitlines()[0]})"
    if not (checkpoint / "optimizer.pt").exists():
        return "optimizer.pt is missing"
    return None


def pick_checkpoint(run_dir: Path, spec: str) -> tuple[Path, list[str]]:
    """The checkpoint to resume from, and notes on damaged ones that were passed over.

    spec is 'last' or a checkpoint folder (absolute, or relative to the run directory).
    """
    run_dir = Path(run_dir)
    if spec != "last":
        path = Path(spec).expanduser()
        path = path if path.is_absolute() else run_dir / path
        if not path.is_dir():
            raise TuneForgeError(f"resume_from_checkpoint: no checkpoint folder at {path}")
        problem = damage(path)
        if problem:
            raise TuneForgeError(f"resume_from_checkpoint: {path.name} is unusable: {problem}")
        return path, []
    notes = []
    for path in reversed(checkpoints(run_dir)):
        problem = damage(path)
        if problem is None:
            return path, notes
        notes.append(f"skipped {path.name}: {problem}")
    detail = f" ({'; '.join(notes)})" if notes else " (set save_steps so that runs save checkpoints)"
    raise TuneForgeError(f"nothing to resume: {run_dir.name} has no usable checkpoint{detail}")


def check_compatible(previous: dict, current: dict) -> None:
    """Refuse a resume whose model, method or adapter shape differs from the run being resumed."""
    changed = [key for key in LOCKED_KEYS if key in previous and previous.get(key) != current.get(key)]
    if changed:
        detail = ", ".join(f"{key} was {previous[key]!r}, now {current.get(key)!r}" for key in changed)
        raise TuneForgeError(f"cannot resume: {detail}; start a new run instead")


def previous_config(run_dir: Path) -> dict:
    """The resolved config the run was trained with (config.yaml, written by the job)."""
    path = Path(run_dir) / "config.yaml"
    if not path.exists():
        return {}
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError:
        return {}
