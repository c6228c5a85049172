"""The options reference, written from the config's metadata: `python -m backend.options_doc > docs/options.md`.

Nothing here restates an option: name, default (and each task's own), bounds or choices, the tasks that read
it and its help all come from `backend.config`'s fields, so the reference cannot drift from what the job
accepts (tests/test_options_doc.py fails when docs/options.md is older than the config).
"""

from __future__ import annotations

import dataclasses
import sys

from backend.config import fields

HEADER = """# Training options

Generated from `backend/config.py` by `python -m backend.options_doc > docs/options.md`; do not edit by hand.

Every key below is read from a run's YAML (`python -m backend.train --config run.yaml`), from the API's
`train_start` options, and drawn as a control in the app. Names follow transformers' `TrainingArguments` and
LLaMA-Factory. Keys left out take their defaults; an unknown key or a value out of bounds is refused with
one line that names it.

| key | default | bounds or choices | tasks | meaning |
|---|---|---|---|---|
"""


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def _value(value) -> str:
    if value == "" or value is None:
        return "empty"
    if isinstance(value, bool):
        return "true" if value else "false"
    return f"`{value}`"


def _default(f: dataclasses.Field) -> str:
    default = f.default if f.default is not dataclasses.MISSING else f.default_factory()  # type: ignore[misc]
    text = _value(default)
    own = f.metadata["task_defaults"]
    if own:
        text += " (" + ", ".join(f"{_value(v)} for {task}" for task, v in own.items()) + ")"
    return text


def _bounds(f: dataclasses.Field) -> str:
    meta = f.metadata
    if meta["choices"]:
        return ", ".join(_value(c) for c in meta["choices"])
    low, high = meta["min"], meta["max"]
    if low is None and high is None:
        return ""
    if high is None:
        return f"≥ {low}"
    if low is None:
        return f"≤ {high}"
    return f"{low} … {high}"


def _tasks(f: dataclasses.Field) -> str:
    tasks = f.metadata["tasks"]
    return ", ".join(tasks) if tasks else "all"


def options_markdown() -> str:
    """docs/options.md: one row per option of TrainConfig, in the form's order."""
    rows = [
        "| "
        + " | ".join([f"`{f.name}`", *(_cell(c) for c in (_default(f), _bounds(f), _tasks(f), f.metadata["help"]))])
        + " |"
        for f in fields()
    ]
    return HEADER + "\n".join(rows) + "\n"


if __name__ == "__main__":
    sys.stdout.write(options_markdown())
