"""Turn documents into a training set: `python -m backend.recipe --config recipe.yaml [--workspace WS]`.

recipe.yaml holds backend.recipes.settings' options (name, sources, generator, kind, chunk_tokens, per_chunk,
...). An endpoint's API key is read from the variable named by `api_key_env` (or TUNEFORGE_RECIPE_API_KEY),
never from a file we write. The rows go to `output_dir` (default <workspace>/recipes/<name>); run the same
recipe again to resume it: rows already generated are kept and not asked for again. At the end the rows are
saved as the named dataset <name> of the workspace, which `dataset: <name>` trains on.
Exit codes: 0 saved, 1 the recipe failed (no rows), 2 a refusal (bad options), 130 aborted.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import yaml

from backend.errors import TuneForgeError
from backend.recipes.generators import RECIPE_KEY_ENV
from backend.runfiles import NICE_ENV


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m backend.recipe", description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", required=True, help="the recipe's YAML file")
    parser.add_argument("--workspace", default=os.environ.get("TUNEFORGE_WORKSPACE", "workspace"))
    return parser.parse_args(argv)


def load(path: str) -> tuple[dict, str]:
    """The options and the API key (from the environment, or a key someone wrote into their own YAML)."""
    try:
        options = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise TuneForgeError(f"{path}: cannot read the recipe ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise TuneForgeError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(options, dict):
        raise TuneForgeError(f"{path}: a recipe is a mapping of options (name, sources, generator, ...)")
    key_env = str(options.pop("api_key_env", "") or RECIPE_KEY_ENV)
    generator = options.get("generator")
    written = generator.pop("api_key", "") if isinstance(generator, dict) else ""
    return options, os.environ.get(key_env, "") or str(written or "")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if steps := os.environ.pop(NICE_ENV, ""):  # started by the app: below its priority, as a training job is
        os.nice(int(steps))
    from backend.recipes.settings import RecipeConfig
    from backend.recipes.worker import main_loop

    try:
        options, api_key = load(args.config)
        config = RecipeConfig.from_dict(options)
        workspace = Path(args.workspace).expanduser().resolve()
        folder = Path(config.output_dir).expanduser() if config.output_dir else workspace / "recipes" / config.name
        config.output_dir = str(folder.resolve())
        return main_loop(config, folder, workspace, api_key)
    except TuneForgeError as exc:
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return 2


if __name__ == "__main__":
    sys.exit(main())
