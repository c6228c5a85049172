"""docs/options.md is written from the config's metadata; a config change that is not regenerated fails here."""

from pathlib import Path

from backend.config import fields
from backend.options_doc import options_markdown

DOC = Path(__file__).resolve().parent.parent / "docs" / "options.md"


def test_the_options_reference_is_the_config_as_generated_now():
    assert DOC.read_text(encoding="utf-8") == options_markdown(), (
        "docs/options.md drifted from backend/config.py: run `python -m backend.options_doc > docs/options.md`"
    )


def test_every_option_has_its_row_with_its_tasks_own_defaults():
    rows = {line.split("|")[1].strip(" `"): line for line in options_markdown().splitlines() if line.startswith("| `")}
    assert list(rows) == [f.name for f in fields()]
    for f in fields():
        for task, value in f.metadata["task_defaults"].items():
            assert f"for {task}" in rows[f.name] and str(value) in rows[f.name]
