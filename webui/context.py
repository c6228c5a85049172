"""What every tab builder needs: the backend singletons, the access gate, and who is calling."""

from __future__ import annotations

from dataclasses import dataclass, field

import gradio as gr
from gradio.context import LocalContext

from backend.access.gate import Gate
from backend.access.roles import Person
from backend.runs.job_manager import JobManager
from backend.serving.chat import ChatEngine
from backend.sweeps.sweep_manager import SweepManager
from webui.empty import EmptyStates


@dataclass
class AppContext:
    jobs: JobManager
    chat: ChatEngine
    blocks: gr.Blocks
    sweeps: SweepManager | None = None
    gate: Gate = field(default=None)  # type: ignore[assignment]
    empty: EmptyStates = field(default_factory=EmptyStates)  # the page's empty tables and charts

    def __post_init__(self):
        if self.gate is None:
            self.gate = Gate(self.jobs)  # a one-person app without logins

    def person(self) -> Person:
        return self.gate.person(caller())

    def act(self, action: str, work, **checks):
        """Do `work(person)` as the caller, if the gate lets them (backend.access.gate.Gate.act)."""
        return self.gate.act(caller(), action, work, **checks)


def caller() -> str | None:
    """The login name behind the event or API call being handled; None without logins.

    Gradio sets the request of every call it runs (events, API endpoints, streamed ones) in this
    context variable before the handler starts. Reading it here, instead of adding a gr.Request
    parameter to every handler, keeps the handlers' signatures what their API clients see. Should
    it ever come back empty in a studio with logins, the gate refuses the action: it fails closed.
    """
    request = LocalContext.request.get(None)
    return getattr(request, "username", None)
