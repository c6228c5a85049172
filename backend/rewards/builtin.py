"""The built-in rewards. Each scores completions (plain text) against the settings and a row's references.

Every reward returns one float per completion, in [0, 1] except keywords, which takes off for avoided
words and so reaches -1. They never raise on a completion: a model may write anything.
"""

from __future__ import annotations

import json
import re
import string
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from backend.errors import TuneForgeError

if TYPE_CHECKING:
    from backend.rewards.reward_spec import RewardSpec

_NUMBER = re.compile(r"[-+]?\d[\d,]*(?:\.\d+)?|[-+]?\.\d+")
_PUNCT = str.maketrans("", "", string.punctuation + "。，、！？：；“”‘’（）")
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$")


@dataclass(frozen=True)
class RewardSettings:
    """The reward options of a config (backend.config's rewards group)."""

    answer_column: str = "answer"
    reward_regex: str = r"^-?\d+(\.\d+)?$"
    reward_target_length: int = 0
    reward_json_schema: str = ""
    reward_keywords: str = ""
    reward_avoid_words: str = ""

    @classmethod
    def from_config(cls, config) -> RewardSettings:
        return cls(**{name: getattr(config, name) for name in cls.__dataclass_fields__})


def exact_answer(completions: list[str], references: dict[str, list], settings: RewardSettings) -> list[float]:
    """1 when the final answer equals the reference: numbers as numbers (the last one written), text normalised."""
    column = settings.answer_column
    if column not in references:
        shown = ", ".join(references) or "none"
        raise TuneForgeError(
            f"the exact_answer reward needs a '{column}' column in the dataset (reference columns: {shown}); "
            "set answer_column"
        )
    return [float(answer_matches(c, ref)) for c, ref in zip(completions, references[column], strict=True)]


def answer_matches(completion: str, reference: Any) -> bool:
    expected = reference_number(reference)
    if expected is not None:
        found = _NUMBER.findall(completion)
        got = _as_number(found[-1]) if found else None
        return got is not None and abs(got - expected) <= 1e-6 * max(1.0, abs(expected))
    want, said = normalise(str(reference)), normalise(completion)
    return bool(want) and (said == want or said.endswith(" " + want))


def reference_number(reference: Any) -> float | None:
    """A numeric reference: a number, a numeric string, or GSM8K's 'reasoning #### 42'."""
    if isinstance(reference, bool):
        return None
    if isinstance(reference, (int, float)):
        return float(reference)
    text = str(reference).split("####")[-1].strip().rstrip(".").lstrip("$")
    return _as_number(text) if _NUMBER.fullmatch(text) else None


def _as_number(text: str) -> float | None:
    try:
        return float(text.replace(",", ""))
    except ValueError:
        return None


def normalise(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold().translate(_PUNCT)
    return " ".join(text.split())


def regex(completions: list[str], references: dict[str, list], settings: RewardSettings) -> list[float]:
    pattern = re.compile(settings.reward_regex)
    return [float(bool(pattern.search(c.strip()))) for c in completions]


def length(completions: list[str], references: dict[str, list], settings: RewardSettings) -> list[float]:
    """The shorter of length and target over the longer: 1 on target, and never flat, so that among
    completions that all miss the target the closer one still earns more (GRPO learns from differences)."""
    target = settings.reward_target_length
    return [min(len(c.strip()), target) / max(len(c.strip()), target) for c in completions]


def json_valid(completions: list[str], references: dict[str, list], settings: RewardSettings) -> list[float]:
    validator = schema_validator(settings.reward_json_schema)
    scores = []
    for completion in completions:
        try:
            value = json.loads(_FENCE.sub("", completion.strip()))
        except ValueError:
            scores.append(0.0)
            continue
        scores.append(float(validator is None or validator.is_valid(value)))
    return scores


def schema_validator(schema: str):
    """A jsonschema validator for an inline schema or a .json file; None when no schema is set."""
    if not schema.strip():
        return None
    import jsonschema

    text = schema
    if not schema.lstrip().startswith("{"):
        try:
            text = Path(schema).read_text(encoding="utf-8")
        except OSError as exc:
            raise TuneForgeError(f"reward_json_schema: cannot read {schema}: {exc.strerror}") from None
    try:
        parsed = json.loads(text)
        validator_class = jsonschema.validators.validator_for(parsed)
        validator_class.check_schema(parsed)
    except ValueError as exc:
        raise TuneForgeError(f"reward_json_schema is not valid JSON: {exc}") from None
    except jsonschema.SchemaError as exc:
        raise TuneForgeError(f"reward_json_schema is not a valid JSON Schema: {exc.message}") from None
    return validator_class(parsed)


def keywords(completions: list[str], references: dict[str, list], settings: RewardSettings) -> list[float]:
    wanted, avoided = word_list(settings.reward_keywords), word_list(settings.reward_avoid_words)
    scores = []
    for completion in completions:
        text = completion.casefold()
        found = sum(w in text for w in wanted) / len(wanted) if wanted else 1.0
        bad = sum(w in text for w in avoided) / len(avoided) if avoided else 0.0
        scores.append(found - bad)
    return scores


def word_list(text: str) -> list[str]:
    return [w.strip().casefold() for w in text.split(",") if w.strip()]


BUILT_INS = {"exact_answer": exact_answer, "regex": regex, "length": length, "json": json_valid, "keywords": keywords}


def _answer_problem(settings: RewardSettings) -> str | None:
    if not settings.answer_column.strip():
        return "the exact_answer reward needs answer_column (the column of reference answers)"
    return None


def _regex_problem(settings: RewardSettings) -> str | None:
    if not settings.reward_regex:
        return "the regex reward needs reward_regex (a pattern the completion should match)"
    try:
        re.compile(settings.reward_regex)
    except re.error as exc:
        return f"reward_regex={settings.reward_regex!r} is not a valid pattern: {exc}"
    return None


def _length_problem(settings: RewardSettings) -> str | None:
    if not settings.reward_target_length:
        return "the length reward needs reward_target_length (characters, above 0)"
    return None


def _no_problem(settings: RewardSettings) -> str | None:
    return None  # json: without a schema any valid JSON earns 1; a bad schema is refused when it is read


def _keywords_problem(settings: RewardSettings) -> str | None:
    if not (settings.reward_keywords.strip() or settings.reward_avoid_words.strip()):
        return "the keywords reward needs reward_keywords or reward_avoid_words"
    return None


# Each built-in's settings (RewardSettings' fields, the config's rewards group) and why they would not do:
# a grpo config naming the reward is refused with that line before any job starts (backend.config).
READS: dict[str, tuple[tuple[str, ...], Callable[[RewardSettings], str | None]]] = {
    "exact_answer": (("answer_column",), _answer_problem),
    "regex": (("reward_regex",), _regex_problem),
    "length": (("reward_target_length",), _length_problem),
    "json": (("reward_json_schema",), _no_problem),
    "keywords": (("reward_keywords", "reward_avoid_words"), _keywords_problem),
}


def check_built_ins(specs: list[RewardSpec], settings: RewardSettings) -> None:
    """Each built-in named has the settings it reads; one line naming the first that does not."""
    for spec in specs:
        if not spec.custom and not spec.learned:
            problem = READS[spec.name][1](settings)
            if problem:
                raise TuneForgeError(problem)
