"""Who a caller is in a shared studio, and what each role may do.

`admin` may do everything. A `member` starts runs and sweeps, evaluates, uploads, and manages
(aborts, resumes, exports) only what they own; other people's runs are theirs to read. A `viewer`
reads: run lists, charts, metrics, and chat with completed runs. Without logins there is one
person at the machine, and they are an admin.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass


class Role(enum.Enum):
    ADMIN = "admin"
    MEMBER = "member"
    VIEWER = "viewer"


ROLE_NAMES = tuple(role.value for role in Role)


@dataclass(frozen=True)
class Person:
    """name: the login name; None for the one local person of an app without logins."""

    name: str | None
    role: Role

    @property
    def label(self) -> str:
        return self.name or "local"


# What an action needs. MEMBER: a member or an admin. OWN: the thing's owner, or an admin.
# An action not listed here only reads, and every role may do it.
MEMBER, OWN = "member", "own"
RULES = {
    "train_start": MEMBER,
    "dataset_upload": MEMBER,
    "dataset_register": MEMBER,
    "time_estimate": MEMBER,  # it trains a few steps to measure
    "evaluate": MEMBER,  # it computes on the device, and writes result tables
    "classify": MEMBER,  # the Evaluate tab's classifier probe, on the device like evaluate
    "batch_predict": MEMBER,
    "adapter_import": MEMBER,
    "sweep_start": MEMBER,
    "train_abort": OWN,
    "train_resume": OWN,
    "export": OWN,
    "export_push": OWN,
    "serve": OWN,  # it puts the run's model behind an API
    "sweep_abort": OWN,
    "recipe_start": MEMBER,  # it runs a job, and may call a paid endpoint
    "recipe_save": MEMBER,
    "recipe_abort": OWN,
    "recipe_resume": OWN,
}
# Actions that create a run; their audit line names the run they made.
MAKES_RUN = ("train_start", "train_resume", "adapter_import")
