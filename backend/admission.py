"""admit(config): the refusals a run meets before it starts, asked alike by the app and by the job.

The app asks at Start and Resume, so that a run it cannot train is refused in the browser rather than
minutes later in a queued job; the job asks again, because a run started from a terminal, or a machine
that changed since the app asked, meets no other check before the model loads. One function means one
order and one wording for both: what a person reads is the same wherever the run was refused.

What only one side checks stays with it: the app's confinement, roles and dataset names (the job reads its
data first thing in setup, and records a bad one as the run's end), and the job's choice of a run folder.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

from backend.capability import Precision, plan_run
from backend.checkpoints import check_compatible, pick_checkpoint, previous_config
from backend.config import TrainConfig
from backend.errors import TuneForgeError
from backend.models.checks import check_model


class Admission(NamedTuple):
    precision: Precision  # what plan_run resolved for this machine
    resume_from: Path | None  # the checkpoint a resume continues from
    notes: list[str]  # damaged checkpoints that were passed over


def admit(config: TrainConfig, hardware: dict) -> Admission:
    """Refuse, in one line, a run that cannot start: resume compatibility, then the machine, then the models.

    hardware: capability.probe() in the job, capability.hardware_summary() in the app (which never imports torch).
    """
    resume_from, notes = resume_point(config) if config.resume_from_checkpoint else (None, [])
    precision = plan_run(config, hardware)  # needs no model, so it answers first
    for spec in (config.model, config.ref_model):  # a model folder or .gguf file that cannot load
        check_model(spec, config.trust_remote_code)
    return Admission(precision, resume_from, notes)


def resume_point(config: TrainConfig) -> tuple[Path, list[str]]:
    """The checkpoint a resume continues from, checked against the run's earlier config.

    Asked before the job writes its config.yaml, which is what the new options are checked against.
    """
    if not config.output_dir:
        raise TuneForgeError("resume_from_checkpoint needs output_dir: the run folder to continue")
    run_dir = Path(config.output_dir).expanduser().resolve()
    check_compatible(previous_config(run_dir), config.to_dict())
    return pick_checkpoint(run_dir, config.resume_from_checkpoint)
