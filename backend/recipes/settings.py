"""A recipe's options, defined once: the CLI's recipe.yaml, the API's recipe_start and the Recipes tab share them.

The generator's API key is not an option: a recipe file is meant to be kept and shared, so the key comes
from the caller (the API's `generator.api_key`, the CLI's `api_key_env` variable) and travels to the job only
through its environment.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any

import yaml

from backend.data.registry import NAME_PATTERN
from backend.errors import TuneForgeError
from backend.recipes.generators import generator_spec
from backend.recipes.steps import KINDS, check_templates


def option(default, help: str, low=None, high=None, **kwargs):
    return field(default=default, metadata={"help": help, "low": low, "high": high}, **kwargs)


@dataclass
class RecipeConfig:
    name: str = option("", "the named dataset the rows are saved as (letters, digits, '_', '-', '.')")
    sources: list = option(None, "documents: PDF, DOCX, Markdown, HTML, TXT files, zips of them, or folders")
    generator: Any = option("base", "'base', {'run': run_id}, or {'base_url', 'model'} of an OpenAI-compatible API")
    kind: str = option("qa", f"rows to write: {', '.join(KINDS)}")
    chunk_tokens: int = option(384, "target chunk length, in the tokenizer's tokens", 16, 8192)
    overlap_tokens: int = option(
        -1, "tokens a chunk repeats from the end of the one before (-1: an eighth of chunk_tokens)", -1, 2048
    )
    per_chunk: int = option(1, "rows written per chunk", 1, 20)
    max_chunks: int = option(0, "use only the first N chunks (0: all); for a cheap first look", 0, 100000)
    model: str = option("default", "whose tokenizer measures the chunks (the model you will train)")
    temperature: float = option(0.7, "the generator's sampling temperature", 0.0, 2.0)
    max_tokens: int = option(256, "the most tokens one generator reply may have", 8, 4096)
    retries: int = option(2, "retries of one failed call before it is counted as failed", 0, 5)
    timeout_s: float = option(60.0, "seconds to wait for one reply of an endpoint", 0.1, 600.0)
    grounding_min: float = option(0.5, "flag an answer when fewer of its words than this occur in its chunk", 0.0, 1.0)
    near_threshold: float = option(0.8, "MinHash similarity at which a row is a near duplicate", 0.5, 1.0)
    min_chars: int = option(8, "flag an answer shorter than this many characters", 0, 10000)
    max_chars: int = option(8000, "flag a row longer than this many characters", 100, 1000000)
    templates: dict = option(None, "prompt templates by step (question, answer, ...), replacing the built-in ones")
    examples: dict = option(None, "few-shot examples by step, replacing the built-in ones")
    output_dir: str = option("", "the recipe's folder (default: <workspace>/recipes/<name>); the same one resumes")

    @classmethod
    def from_dict(cls, options: dict[str, Any]) -> RecipeConfig:
        if not isinstance(options, dict):
            raise TuneForgeError("a recipe is a mapping of options (name, sources, generator, kind, ...)")
        known = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(options) - known - {"api_key_env"})
        if unknown:
            raise TuneForgeError(f"unknown recipe option(s): {', '.join(unknown)} (known: {', '.join(sorted(known))})")
        config = cls(**{k: v for k, v in options.items() if k in known})
        config.check()
        return config

    def check(self) -> None:
        if not isinstance(self.name, str) or not NAME_PATTERN.match(self.name):
            raise TuneForgeError(
                f"name {self.name!r}: the dataset's name; use letters, digits, '_', '-' or '.', at most 64 characters"
            )
        if isinstance(self.sources, str):
            self.sources = [self.sources]
        if not isinstance(self.sources, list) or not self.sources:
            raise TuneForgeError("sources: give at least one document, zip or folder")
        if len(self.sources) > 1000 or not all(isinstance(s, str) and s.strip() for s in self.sources):
            raise TuneForgeError("sources: a list of at most 1000 paths")
        if self.kind not in KINDS:
            raise TuneForgeError(f"kind {self.kind!r}: use one of {', '.join(KINDS)}")
        self.generator = generator_spec(self.generator)
        for f in dataclasses.fields(self):
            self._check_number(f)
        if self.overlap_tokens == -1:
            self.overlap_tokens = self.chunk_tokens // 8
        if self.overlap_tokens * 2 >= self.chunk_tokens:
            raise TuneForgeError(
                f"overlap_tokens {self.overlap_tokens}: must be less than half of chunk_tokens ({self.chunk_tokens})"
            )
        self.templates, self.examples = dict(self.templates or {}), dict(self.examples or {})
        check_templates(self.templates, self.examples)
        if not isinstance(self.model, str) or not isinstance(self.output_dir, str):
            raise TuneForgeError("model and output_dir: must be text")

    def _check_number(self, f: dataclasses.Field) -> None:
        low, high = f.metadata["low"], f.metadata["high"]
        if low is None:
            return
        value = getattr(self, f.name)
        wanted = int if f.type in ("int", int) else float
        if isinstance(value, bool) or not isinstance(value, (int, float)) or (wanted is int and value != int(value)):
            raise TuneForgeError(f"{f.name} {value!r}: must be {'a whole number' if wanted is int else 'a number'}")
        if not low <= value <= high:
            raise TuneForgeError(f"{f.name} {value}: must be between {low} and {high}")
        setattr(self, f.name, wanted(value))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False, allow_unicode=True)

    def fingerprint(self) -> dict[str, Any]:
        """What decides which rows a recipe makes: a resume must not mix rows of different settings."""
        keep = ("sources", "kind", "chunk_tokens", "overlap_tokens", "model", "templates", "examples")
        return {k: getattr(self, k) for k in keep}
