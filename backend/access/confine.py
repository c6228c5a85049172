"""Which folders the web app may read for a browser or API caller, and the one check that keeps it there.

A person at a terminal runs `python -m backend.train` with their own rights, so the CLI is not
confined. The web app is different: without this, anyone with a login could name /etc/passwd
as a dataset and read it back in the Dataset tab's preview, or load a model folder from
someone's home directory. So every path a browser or API caller gives is resolved (`~`
expanded, `..` collapsed, symlinks followed) and must then lie under the workspace, the
model cache, the bundled assets, or a folder the owner allowed with `launch.py --allow-dir`.

Inside those folders the studio keeps files of its own, which are never data, whatever option names
them: the audit log, the sweeps' study storage, run folders (a run's model is its owner's: the gate
checks that), the model cache (models may load from it, data may not) and the files the owner names
private (the users file of --auth-file). A data option inside the workspace may name uploads/ and the
team's datasets/ only.

The check runs on what a path *resolves to*, so a name that goes through a registry
(dataset_info.json's file_name) or a symlink is judged by where it really points. Relative
paths mean the same to the app and its jobs because the app runs in the project folder,
as its jobs do (launch.py).
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from pathlib import Path

from backend.config import options_where
from backend.errors import TuneForgeError
from backend.paths import ASSETS_DIR, model_cache_dir

# Options that end up in a path: those marked path in backend.config, so a new one is confined where it is defined.
PATH_OPTIONS = options_where("path")
REWARDS_FOLDER = "rewards"  # in the workspace: the only place the app runs custom reward files from
# The workspace's folders that hold data a caller may name; everything else in it is the studio's own.
DATA_FOLDERS = ("uploads", "datasets")
MODEL_FOLDERS = ("uploads", "runs")  # a run's merged model or adapter, its owner's (backend.access.gate)
INTERNAL = "is one of the studio's own files, not data"


class Confinement:
    """The folders a browser or API caller may read: the workspace, the model cache, assets/, and allowed dirs."""

    def __init__(
        self,
        workspace: str | Path,
        allowed: Iterable[str | Path] = (),
        enforced: bool = True,
        private: Iterable[str | Path] = (),
    ):
        """private: files of the owner's that no option may name even inside an allowed folder (the users file)."""
        self.workspace = Path(workspace).expanduser().resolve()
        self.model_cache = model_cache_dir().expanduser().resolve()
        extra = [Path(p).expanduser().resolve() for p in allowed]
        self.roots = [self.workspace, self.model_cache, ASSETS_DIR.resolve(), *extra]
        self.private = [Path(p).expanduser().resolve() for p in private]
        self.enforced = enforced

    @classmethod
    def off(cls, workspace: str | Path) -> Confinement:
        """No confinement: for a JobManager driven by code or tests on the owner's behalf, not by a browser."""
        return cls(workspace, enforced=False)

    # ---- one path -----------------------------------------------------------------------
    def path(self, value: str | Path, what: str, kind: str = "") -> Path:
        """value resolved, or a TuneForgeError naming `what` when it lies outside every allowed root.

        kind "data" or "model" also refuses the studio's own files (internal())."""
        text = str(value)
        refuse_nul(text, what)
        try:
            resolved = Path(os.path.realpath(Path(text).expanduser()))
        except (OSError, ValueError, RuntimeError) as exc:
            raise TuneForgeError(f"{what} {short(text)!r} cannot be resolved ({exc})") from None
        if self.enforced and not any(resolved.is_relative_to(root) for root in self.roots):
            raise TuneForgeError(
                f"{what} {short(resolved)} is outside the workspace and the allowed folders "
                f"({', '.join(map(str, self.roots))}); the owner can add a folder with launch.py --allow-dir"
            )
        if self.enforced and kind and self.internal(resolved, kind):
            raise TuneForgeError(f"{what} {short(resolved)} {INTERNAL}; name an upload or a named dataset")
        return resolved

    def internal(self, resolved: Path, kind: str) -> bool:
        """Whether a resolved path is one of the studio's own files for a `kind` ("data" or "model") option."""
        if any(resolved == p or resolved.is_relative_to(p) for p in self.private):
            return True
        if resolved.is_relative_to(self.workspace):
            inside = resolved.relative_to(self.workspace).parts
            return not inside or inside[0] not in (DATA_FOLDERS if kind == "data" else MODEL_FOLDERS)
        return kind == "data" and resolved.is_relative_to(self.model_cache)

    def tree(self, folder: Path, what: str, kind: str = "") -> Path:
        """A folder and every file in it, so a symlink inside an allowed folder cannot lead out of it."""
        folder = self.path(folder, what, kind)
        if self.enforced and folder.is_dir():
            for item in folder.rglob("*"):
                self.path(item, f"{what}'s file", kind)
        return folder

    # ---- what a path option names -----------------------------------------------------------
    def model(self, spec: str, what: str = "model") -> None:
        """'default' and hub ids pass; anything that exists on disk must be inside the allowed folders."""
        spec = (spec or "").strip()
        refuse_nul(spec, what)
        if spec and spec != "default" and _exists(spec):
            self.tree(Path(spec), what, "model")

    def dataset(self, spec: str, dataset_dir: str = "", what: str = "dataset") -> None:
        """Every file a dataset spec resolves to (a path, a registry entry's file_name, each part of a mix)."""
        from backend.data.registry import resolve_all

        refuse_nul(spec or "", what)
        self.dataset_dir(dataset_dir)
        try:
            sources = resolve_all(spec, self.workspace, dataset_dir)
        except OSError as exc:  # a name too long for the file system, say
            raise TuneForgeError(f"{what} {spec[:80]!r}: {exc.strerror or exc}") from None
        for source in sources:
            if source.path is not None:
                named = f"{what} '{source.name}'" if source.name != source.path.name else what
                self.tree(source.path, named, "data")

    def dataset_dir(self, dataset_dir: str) -> None:
        if (dataset_dir or "").strip():
            self.path(dataset_dir.strip(), "dataset_dir", "data")

    def options(self, config, only: Iterable[str] | None = None) -> None:
        """Check a TrainConfig's path options (or only those named) before the app reads or writes anything.

        output_dir is left to the JobManager, which keeps it a plain run name inside runs/.
        """
        names = set(PATH_OPTIONS if only is None else only) & set(PATH_OPTIONS)
        for name in names:
            refuse_nul(getattr(config, name), name)
        if "model" in names:
            self.model(config.model)
        if "ref_model" in names and config.ref_model.strip():
            self.model(config.ref_model, "ref_model")
        if "dataset_dir" in names:
            self.dataset_dir(config.dataset_dir)
        if "dataset" in names:
            self.dataset(config.dataset, config.dataset_dir)
        if "eval_dataset" in names and config.eval_dataset.strip():
            self.dataset(config.eval_dataset, config.dataset_dir, "eval_dataset")
        if "rewards" in names and config.task == "grpo":
            config.rewards = self.rewards(config.rewards)
        if "reward_model" in names and config.reward_model.strip():
            config.reward_model = self.reward_model(config.reward_model.strip(), "reward_model")
        schema = config.reward_json_schema.strip()
        if "reward_json_schema" in names and schema and not schema.startswith("{"):  # a file, not inline JSON
            self.path(schema, "reward_json_schema", "data")
        checkpoint = config.resume_from_checkpoint.strip()
        if "resume_from_checkpoint" in names and checkpoint not in ("", "last"):
            # The job reads a relative checkpoint folder inside the run's own folder; so does this check.
            run_dir = self.workspace / "runs" / config.output_dir if config.output_dir.strip() else Path()
            self.path(run_dir / Path(checkpoint).expanduser(), "resume_from_checkpoint")

    def rewards(self, spec: str) -> str:
        """The rewards spec with each custom file resolved inside the workspace's rewards/ folder.

        A browser or API caller names files there ("mine.py:score" or "rewards/mine.py:score"); the
        owner puts them there. Anywhere else is refused even where datasets may be read, so an upload
        can never become code that runs. The CLI, which runs as its user, may name any file.
        """
        from backend.rewards.reward_spec import parse_rewards

        folder = (self.workspace / REWARDS_FOLDER).resolve()
        parts = []
        for reward in parse_rewards(spec):
            if reward.learned:
                parts.append(f"rm:{self.reward_model(reward.model, 'rewards: rm')}:{exact(reward.weight)}")
                continue
            if not reward.custom:
                parts.append(f"{reward.name}:{exact(reward.weight)}")
                continue
            refuse_nul(reward.path, "rewards")
            named = Path(reward.path).expanduser()
            inside = folder / (named.relative_to(REWARDS_FOLDER) if named.parts[0] == REWARDS_FOLDER else named)
            if not named.is_absolute() and (self.enforced or inside.is_file()):
                named = inside
            resolved = Path(os.path.realpath(named))
            if self.enforced and not resolved.is_relative_to(folder):
                raise TuneForgeError(
                    f"rewards: {reward.path} is outside {folder}; the app runs reward files from that folder only"
                )
            if not resolved.is_file():
                raise TuneForgeError(f"rewards: no file {resolved} (put your reward files in {folder})")
            parts.append(f"{resolved}:{reward.name}:{exact(reward.weight)}")
        return ", ".join(parts)

    def reward_model(self, target: str, what: str) -> str:
        """A reward model's run folder, from its run id: the app names runs, never folders.

        Every login may read every run of the studio (backend.access.roles), so the runs a caller may
        name are exactly the workspace's; a path, a climb or a symlink out of runs/ is refused. Code
        driving the manager on the owner's behalf (unenforced) may also give a folder, as the CLI does.
        """
        from backend.rewards.learned import reward_model_dir

        refuse_nul(target, what)
        runs = (self.workspace / "runs").resolve()
        plain = target not in (".", "..") and "/" not in target and "\\" not in target
        if plain and (self.enforced or (runs / target).is_dir()):
            folder = Path(os.path.realpath(runs / target))
            if folder.parent != runs or not folder.is_dir():
                raise TuneForgeError(f"{what}: no run named {target!r} in {runs}")
        elif self.enforced:
            raise TuneForgeError(f"{what}: {target!r} is not a run id; the app takes a reward model's run id")
        else:
            folder = Path(target).expanduser().resolve()
        try:
            return str(reward_model_dir(folder))
        except TuneForgeError as exc:
            raise TuneForgeError(f"{what}: {exc}") from None


def exact(weight: float) -> str:
    """A weight written short where that loses nothing (2, 0.5), else in full: the job reads what was given."""
    short = f"{weight:g}"
    return short if float(short) == weight else repr(weight)


def short(value, limit: int = 120) -> str:
    """A value as a message quotes it: a hostile 10 MB name must not become a 10 MB message."""
    text = str(value)
    return text if len(text) <= limit else f"{text[:limit]}…({len(text)} chars)"


def _exists(spec: str) -> bool:
    try:
        return Path(spec).expanduser().exists()
    except (OSError, ValueError):  # too long a name is no file at all
        return False


def refuse_nul(text: str, what: str) -> None:
    """A NUL byte cuts a path short in C and makes Python's os calls raise; refuse it in words."""
    if "\0" in str(text):
        raise TuneForgeError(f"{what} contains a NUL byte; give a plain path or name")
