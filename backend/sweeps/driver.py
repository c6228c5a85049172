"""One sweep's loop: ask Optuna for a trial, queue it as an ordinary run, follow its evals, tell the result.

Trials run one after another through the job manager's queue, like any Start, so each is a run
with its own folder, chart, chat, evaluation and export. The loop reports each evaluation of the
sweep's metric to Optuna as it appears in the run's events; when the pruner says a trial is worse
than earlier ones at the same step, the run is aborted with that reason and the trial is pruned.

A driver that stops with its process (the app killed, a terminal closed) leaves its trial's job
running; the next driver of the sweep (the restarted app, the same CLI command again) follows that
run to its end before it asks for more.

Several machines may drive one sweep (one study in a shared database). Each chooses its next trial
under the study's lock (backend.sweeps.study_lock), so together they ask for n_trials and no more, and
each keeps a heartbeat on the trial it follows. A machine that dies stops its heartbeat: after the
grace period (backend.sweeps.study) another driver fails that trial as lost and runs its values again.
While the last trials run elsewhere, a driver with nothing left to ask waits for them, ready to take
up a lost one, and the sweep is completed when no trial is left running anywhere.
"""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

import optuna
from optuna.exceptions import UpdateFinishedTrialError
from optuna.storages import fail_stale_trials
from optuna.trial import FrozenTrial, Trial, TrialState

from backend.errors import TuneForgeError
from backend.events import END_STATUSES, end_event
from backend.runs.job_manager import JobManager
from backend.sweeps.study import ENDED, distributions, heartbeat_s, lost_trials, study_engine, this_driver
from backend.sweeps.study_lock import study_lock
from backend.sweeps.sweep_spec import SweepSpec

POLL_S = 0.5
IDLE_POLL_S = 2.0  # waiting on other machines' trials: a lost one is seen within the grace period anyway


class SweepDriver:
    def __init__(
        self,
        jobs: JobManager,
        study: optuna.Study,
        spec: SweepSpec,
        stop: threading.Event,
        pid: int,
        say: Callable[[str], None] = lambda line: None,
    ):
        self.jobs, self.study, self.spec, self.stop, self.say = jobs, study, spec, stop, say
        self.me = this_driver(jobs.workspace, pid)
        self.worst = math.inf if spec.direction == "minimize" else -math.inf
        self._last_beat = 0.0

    def run(self) -> str:
        """Work until n_trials have ended or stop is set; the sweep's status at the end."""
        self.study.set_user_attr("driver", self.me)
        try:
            ours = self._ours_unfinished()
            for trial, _ in ours:  # before any driver here judges heartbeats: these are not lost
                self._beat(trial)
            for trial, run_id in ours:
                self._follow(trial, self._still_coming(run_id) or self._start(trial))
            while not self._stopping():
                trial = self._next_trial()
                if trial is not None:
                    self._follow(trial, self._start(trial))
                elif self._others_working():
                    self.stop.wait(IDLE_POLL_S)
                else:
                    break
        except Exception as exc:  # noqa: BLE001 - the sweep must end with a status, whatever broke it
            self.study.set_user_attr("error", f"{type(exc).__name__}: {exc}")
            self.study.set_user_attr("status", "failed")
            raise
        status = "aborted" if self.stop.is_set() else "completed"
        self.study.set_user_attr("status", status)
        self.say(f"sweep {self.study.study_name} {status}")
        return status

    def _stopping(self) -> bool:
        if self.study.user_attrs.get("status") == "aborted":  # sweep_abort from another process
            self.stop.set()
        return self.stop.is_set()

    def _next_trial(self) -> Trial | None:
        """The next trial for this driver, chosen under the study's lock; None when n_trials are asked for."""
        with study_lock(study_engine(self.study), self.study.study_name):
            fail_stale_trials(self.study)  # lost trials are failed, and their values enqueued again
            trials = self.study.get_trials(deepcopy=False)
            lost = lost_trials(trials)
            waiting = any(t.state == TrialState.WAITING for t in trials)
            asked = [t for t in trials if t.state in (*ENDED, TrialState.RUNNING) and t.number not in lost]
            if not waiting and len(asked) >= self.spec.n_trials:
                return None
            trial = self.study.ask(distributions(self.spec))
            trial.set_user_attr("driver", self.me)
            self._beat(trial)
            return trial

    def _others_working(self) -> bool:
        states = (TrialState.RUNNING, TrialState.WAITING)
        return bool(self.study.get_trials(deepcopy=False, states=states))

    def _beat(self, trial: Trial) -> None:
        self.study._storage.record_heartbeat(trial._trial_id)  # noqa: SLF001 - Optuna's heartbeat, in ask/tell
        self._last_beat = time.monotonic()

    def _ours_unfinished(self) -> list[tuple[Trial, str | None]]:
        """Trials an earlier driver of this workspace asked for and did not see end, with their run ids."""
        mine = []
        for frozen in self.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
            owner = frozen.user_attrs.get("driver", {})
            if (owner.get("host"), owner.get("workspace")) == (self.me["host"], self.me["workspace"]):
                trial = Trial(self.study, frozen._trial_id)  # noqa: SLF001 - Optuna's way back to a live trial
                mine.append((trial, frozen.user_attrs.get("run_id")))
        return mine

    def _still_coming(self, run_id: str | None) -> str | None:
        """The trial's run, unless the earlier driver's app ended while it was queued (a queue lives in its app)."""
        if run_id is None:
            return None
        try:
            status = self.jobs.status(run_id)["status"]
        except TuneForgeError:  # its folder is gone
            return None
        if status == "queued" and run_id not in self.jobs.queue():
            self.jobs.abort(run_id, reason="its app stopped before it started; the sweep queued the trial again")
            return None
        return run_id

    def _start(self, trial: Trial) -> str | None:
        """Queue the trial's run; None (and a failed trial) where the options are refused."""
        trial.set_user_attr("driver", self.me)  # a trial taken up after a restart: this process now
        params = {**trial.params}
        try:
            options = self.spec.trial_options(params)
            run_id = self.jobs.start(options, sweep=self._label(trial), owner=self.study.user_attrs.get("owner"))
        except TuneForgeError as exc:
            self._end(trial, TrialState.FAIL, status="failed", error=str(exc))
            return None
        trial.set_user_attr("run_id", run_id)
        self.say(f"trial {trial.number}: run {run_id} " + " ".join(f"{k}={v}" for k, v in params.items()))
        return run_id

    def _label(self, trial: Trial) -> dict[str, Any]:
        return {"sweep_id": self.study.study_name, "trial": trial.number}

    def _follow(self, trial: Trial, run_id: str | None) -> None:
        try:
            self._watch(trial, run_id)
        except UpdateFinishedTrialError:
            # This driver stalled past the grace period, and another one took the trial as lost.
            if run_id is not None:
                self.jobs.abort(run_id, reason="another machine runs this trial's values again")
            self.say(f"trial {trial.number}: taken over by another driver after this one stopped answering")

    def _watch(self, trial: Trial, run_id: str | None) -> None:
        if run_id is None:
            return
        reported = set(self._frozen(trial).intermediate_values)
        while True:
            if time.monotonic() - self._last_beat >= heartbeat_s() / 2:
                self._beat(trial)
            if self._stopping():
                self.jobs.abort(run_id, reason=f"the sweep {self.study.study_name} was aborted")
                self._end(trial, TrialState.FAIL, status="aborted", error="the sweep was aborted")
                return
            events = self.jobs.events(run_id)
            running = end_event(events) is None  # a run that ended meanwhile is judged by its end, not pruned
            for step, value in self._evals(events):
                if step in reported:
                    continue
                reported.add(step)
                trial.report(value, step)
                if running and trial.should_prune() and self._clearly_worse(step, value):
                    self._prune(trial, run_id, step, value)
                    return
            summary = self.jobs.status(run_id)  # reaps a job that died, so that its end says why
            if summary["status"] in END_STATUSES:
                events = self.jobs.events(run_id)
                self._finish(trial, end_event(events) or summary, events)
                return
            self.stop.wait(POLL_S)

    def _evals(self, events: list[dict[str, Any]]) -> list[tuple[int, float]]:
        """(step, metric) of every evaluation; one that was not a number (a diverged run) counts as the worst."""
        found = []
        for event in events:
            if event["type"] == "eval" and self.spec.metric in event and not event.get("final"):
                value = event[self.spec.metric]
                found.append((event["step"], self.worst if value is None else float(value)))
        return found

    def _clearly_worse(self, step: int, value: float) -> bool:
        """Worse than the median of completed trials at this step by more than the margin, not by a hair.

        Optuna's median pruner prunes on any difference; with few trials that stops a trial tied with
        the one before it (0.003 apart in a loss of 3.7 on the demo: docs/benchmarks.md).
        """
        completed = self.study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
        earlier = [t.intermediate_values[step] for t in completed if step in t.intermediate_values]
        if not earlier:
            return True  # the pruner judged on steps these trials never reached
        median = statistics.median(earlier)
        margin = self.spec.pruner_margin * abs(median)
        return value > median + margin if self.spec.direction == "minimize" else value < median - margin

    def _prune(self, trial: Trial, run_id: str, step: int, value: float) -> None:
        why = (
            f"pruned by sweep {self.study.study_name}: {self.spec.metric} {value:.4g} at step {step} is worse than "
            f"the median of earlier trials there by more than {self.spec.pruner_margin:.0%}"
        )
        self.jobs.abort(run_id, reason=why)
        self._end(trial, TrialState.PRUNED)
        self.say(f"trial {trial.number}: pruned at step {step} ({self.spec.metric} {value:.4g})")

    def _finish(self, trial: Trial, end: dict[str, Any], events: list[dict[str, Any]]) -> None:
        if end["status"] != "completed":
            status = "aborted" if end["status"] == "aborted" else "failed"
            self._end(trial, TrialState.FAIL, status=status, error=end.get("error") or end["status"])
            self.say(f"trial {trial.number}: {status}: {end.get('error')}")
            return
        value = final_value(end, events, self.spec.metric)
        if value is None:
            error = f"the run reported no {self.spec.metric} (or one that was not a number)"
            self._end(trial, TrialState.FAIL, status="failed", error=error)
            self.say(f"trial {trial.number}: failed: {error}")
            return
        self.study.tell(trial, value)
        self.say(f"trial {trial.number}: completed, {self.spec.metric} {value:.4g}")

    def _end(self, trial: Trial, state: TrialState, **attrs: Any) -> None:
        for key, value in attrs.items():
            trial.set_user_attr(key, value)
        self.study.tell(trial, state=state)

    def _frozen(self, trial: Trial) -> FrozenTrial:
        return next(t for t in self.study.get_trials(deepcopy=False) if t.number == trial.number)


def final_value(end: dict[str, Any], events: list[dict[str, Any]], metric: str) -> float | None:
    """A completed run's metric: its end's held-out value (eval_-prefixed as Trainer names it, before the last
    logged one of the same name, as backend.task_metrics.reported reads it), else its last evaluation's."""
    for key in ("eval_" + metric.removeprefix("eval_"), metric):
        if isinstance(end.get(key), int | float) and math.isfinite(end[key]):
            return float(end[key])
    evals = [e[metric] for e in events if e["type"] == "eval" and e.get(metric) is not None]
    return float(evals[-1]) if evals else None
