"""Every action a browser or API caller takes, checked against who they are and recorded.

The web handlers and the API endpoints both come through here, so a rule holds however a
person reaches the app: hiding a button is only a courtesy. A check refuses in one line, and
the refusal is recorded in the audit trail (backend.access.audit) like the action itself:

- the role (backend.access.roles): viewers read; members act on what they own; admins on everything;
- options that run code that is not the studio's own (`runs_code` fields such as trust_remote_code):
  in a shared studio only an admin may set them, and only where the owner launched the app with
  --allow-remote-code, since a login alone must not let anyone run code on the server;
- uploads are private: each person's go to `uploads/<name>/`, and a dataset that resolves into
  another person's folder is refused (a named dataset, saved for the team, is shared);
- fairness: a member may have at most `max_queued` runs waiting in the queue.

Without logins the app is one person's, who is an admin: nothing is refused here and nothing is
recorded as owned, but the audit trail is still kept.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from backend.access.audit import AuditLog
from backend.access.confine import short
from backend.access.roles import MAKES_RUN, OWN, RULES, Person, Role
from backend.config import code_options
from backend.data.registry import resolve_all
from backend.errors import TuneForgeError

if TYPE_CHECKING:  # the gate is handed the app's managers and stands in front of them; it never builds one
    from backend.runs.job_manager import JobManager
    from backend.sweeps.sweep_manager import SweepManager

T = TypeVar("T")
MAX_QUEUED = 3
_UNSET = object()


class Gate:
    def __init__(
        self,
        jobs: JobManager,
        roles: dict[str, Role] | None = None,
        allow_remote_code: bool = False,
        max_queued: int = MAX_QUEUED,
    ):
        """roles: login name → role when the app has logins; None for a one-person app without them."""
        self.jobs = jobs
        self.roles = roles
        self.allow_remote_code = allow_remote_code
        self.max_queued = max_queued
        self.audit = AuditLog(jobs.workspace)

    @property
    def shared(self) -> bool:
        return self.roles is not None

    def person(self, username: str | None) -> Person:
        if not self.shared:
            return Person(None, Role.ADMIN)
        # Fails closed: a call whose login cannot be told is nobody's, and may only read.
        role = self.roles.get(username or "")
        if role is None:
            raise TuneForgeError("sign in first: this studio needs a login for that")
        return Person(username, role)

    # ---- acting ---------------------------------------------------------------------------
    def act(
        self,
        username: str | None,
        action: str,
        work: Callable[[Person], T],
        *,
        run_id: str | None = None,
        owner: Any = _UNSET,
        options: Iterable[dict[str, Any]] = (),
        details: dict[str, Any] | None = None,
    ) -> T:
        """Check `action` for the caller, do `work(person)`, and record the result (a refusal as well).

        owner: a function giving whose thing a non-run action (a sweep) touches; by default `run_id`'s owner.
        options: the option sets the action would run with, each checked for code and private data.
        details: more for the audit line (the sweep id, an upload's file name).
        """
        person = self.person(username)
        details = dict(details or {})
        try:
            self.check(person, action, run_id=run_id, owner=owner, options=options)
            result = work(person)
        except TuneForgeError as exc:
            self.audit.record(person.label, action, f"refused: {exc}", run_id, **details)
            raise
        made = result if action in MAKES_RUN and isinstance(result, str) else None
        if action == "sweep_start" and isinstance(result, str):
            details["sweep_id"] = result
        self.audit.record(person.label, action, "ok", run_id or made, **details)
        return result

    def check(
        self,
        person: Person,
        action: str,
        *,
        run_id: str | None = None,
        owner: Any = _UNSET,
        options: Iterable[dict[str, Any]] = (),
    ) -> None:
        rule = RULES.get(action)
        if rule is not None and person.role is Role.VIEWER:
            raise TuneForgeError(f"{person.label} is a viewer: {action} needs a member's or an admin's login")
        if rule == OWN and person.role is not Role.ADMIN:
            whose = self.jobs.owner(run_id) if owner is _UNSET else owner()
            if whose != person.name:
                thing = f"run {short(run_id)}" if owner is _UNSET else "this"
                held = f"belongs to {whose}" if whose else "was made without a login"
                raise TuneForgeError(f"{thing} {held}; only its owner or an admin may {action}")
        for chosen in options:
            self.check_options(person, chosen)
        if action in ("train_start", "train_resume"):
            self._check_queue(person)

    def check_options(self, person: Person, options: dict[str, Any]) -> None:
        """Refuse code-running options and other people's uploads in one option set."""
        if self.shared and (names := code_options(options)):
            if person.role is not Role.ADMIN:
                raise TuneForgeError(
                    f"{', '.join(names)}: only an admin may run code that is not the studio's own (a model's "
                    "own code, a reward file) on this server"
                )
            if not self.allow_remote_code:
                raise TuneForgeError(
                    f"{', '.join(names)}: this studio runs no code that is not its own; its owner can allow it "
                    "by launching with --allow-remote-code"
                )
        for key in ("dataset", "eval_dataset"):
            if options.get(key):
                self.check_dataset(person, str(options[key]), str(options.get("dataset_dir") or ""), key)
        for key in ("model", "ref_model"):
            if isinstance(options.get(key), str) and options[key].strip():
                self.check_run_model(person, options[key], key)

    def check_run_model(self, person: Person, spec: str, what: str = "model") -> None:
        """A model inside a run folder (its adapter, its merged export) is the run owner's, as the run is."""
        if not self.shared or person.role is Role.ADMIN:
            return
        try:
            path = Path(spec).expanduser().resolve()
        except (OSError, ValueError, RuntimeError):
            return  # not a path: the model check says why
        runs = self.jobs.runs_dir.resolve()
        if path.is_relative_to(runs) and path != runs:
            run_id = path.relative_to(runs).parts[0]
            try:
                whose = self.jobs.owner(run_id)
            except TuneForgeError:
                whose = None  # no such run: as unowned as a run made without a login
            if whose != person.name:
                held = f"belongs to {whose}" if whose else "was made without a login"
                raise TuneForgeError(
                    f"{what}: run {short(run_id)} {held}; only its owner or an admin may use its model"
                )

    def check_dataset(self, person: Person, spec: str, dataset_dir: str = "", what: str = "dataset") -> None:
        """A dataset that resolves into another person's uploads is refused; a named (team) dataset is not."""
        if not self.shared or person.role is Role.ADMIN:
            return
        try:
            sources = resolve_all(spec, self.jobs.workspace, dataset_dir)
        except (TuneForgeError, OSError):
            return  # not a dataset at all: the action itself says why
        everyone, mine = self.uploads_root.resolve(), self.uploads_dir(person).resolve()
        for source in sources:
            if source.path is None:
                continue
            path = source.path.expanduser().resolve()
            if path.is_relative_to(everyone) and not path.is_relative_to(mine):
                raise TuneForgeError(
                    f"{what} {source.name}: another person's upload is private; its owner can save it as a "
                    "named dataset for the team"
                )

    def _check_queue(self, person: Person) -> None:
        if not self.shared or person.role is Role.ADMIN:
            return
        queued = sum(1 for run in self.jobs.list_runs() if run["status"] == "queued" and run["owner"] == person.name)
        if queued >= self.max_queued:
            raise TuneForgeError(
                f"{person.label} already has {queued} runs queued (at most {self.max_queued} a person); "
                "wait for one to start, or abort one"
            )

    def evaluation_data(self, run_id: str, dataset: str | None = None) -> list[dict[str, Any]]:
        """What an evaluation reads, as options to check: the dataset named, else the run's own data.

        So evaluating another person's run does not show the rows of their private upload."""
        if dataset:
            return [{"dataset": dataset}]
        try:
            config = self.jobs.config(run_id)
        except TuneForgeError:
            return []  # 'base', or no such run: the evaluation itself says why
        return [{key: config.get(key) for key in ("dataset", "eval_dataset", "dataset_dir")}]

    # ---- the caller's own places ---------------------------------------------------------------
    @property
    def uploads_root(self) -> Path:
        return self.jobs.workspace / "uploads"

    def uploads_dir(self, person: Person) -> Path:
        """Where a person's uploads go: their own folder in a shared studio."""
        if not self.shared:
            return self.uploads_root
        return self.uploads_root / (re.sub(r"[^A-Za-z0-9_.-]+", "-", person.label).strip(".-") or "user")

    # ---- the usual actions, for the web handlers and the API alike -----------------------------------
    def start(self, username: str | None, options: dict[str, Any]) -> str:
        return self.act(username, "train_start", lambda p: self.jobs.start(options, owner=p.name), options=[options])

    def abort(self, username: str | None, run_id: str) -> None:
        self.act(username, "train_abort", lambda p: self.jobs.abort(run_id), run_id=run_id)

    def resume(self, username: str | None, run_id: str, overrides: dict[str, Any] | None = None) -> str:
        try:
            options = {**self.jobs.config(run_id), **(overrides or {})}  # the run as it would go on
        except TuneForgeError:
            options = dict(overrides or {})  # no such run: act() records the refusal that says so
        return self.act(
            username, "train_resume", lambda p: self.jobs.resume(run_id, overrides), run_id=run_id, options=[options]
        )

    def start_sweep(self, username: str | None, sweeps: SweepManager, spec: dict[str, Any]) -> str:
        """A new sweep, or one of that name gone on with: a stored sweep is its owner's (or an admin's) to resume."""
        tried = sweep_option_sets(spec)
        name = spec.get("name") if isinstance(spec, dict) and isinstance(spec.get("name"), str) else None

        def work(person: Person) -> str:
            if name and person.role is not Role.ADMIN and name in sweeps.sweep_ids():
                whose = sweeps.owner(name)
                if whose != person.name:
                    held = f"belongs to {whose}" if whose else "was made without a login"
                    raise TuneForgeError(f"sweep {name} {held}; only its owner or an admin may go on with it")
            return sweeps.start(spec, owner=person.name)

        details = {"sweep_id": short(name, 100)} if name else {}
        return self.act(username, "sweep_start", work, options=tried, details=details)

    def abort_sweep(self, username: str | None, sweeps: SweepManager, sweep_id: str) -> None:
        owner = functools.partial(sweeps.owner, sweep_id)
        details = {"sweep_id": short(sweep_id, 100)}
        self.act(username, "sweep_abort", lambda p: sweeps.abort(sweep_id), owner=owner, details=details)


def sweep_option_sets(spec: Any) -> list[dict[str, Any]]:
    """The base options, and the base with each listed value of the search space: what a sweep may run with."""
    if not isinstance(spec, dict):
        return []  # the sweep's own check refuses it in words
    base = spec.get("base") if isinstance(spec.get("base"), dict) else {}
    space = spec.get("space") if isinstance(spec.get("space"), dict) else {}
    tried = [base]
    for name, values in space.items():
        if isinstance(values, list):
            tried += [{**base, name: value} for value in values]
    return tried
