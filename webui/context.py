"""What every tab builder needs: the backend singletons and the workspace paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.runs.manager import JobManager
from backend.serving.chat import ChatEngine
from backend.sweeps.manager import SweepManager


@dataclass
class AppContext:
    jobs: JobManager
    chat: ChatEngine
    blocks: gr.Blocks
    sweeps: SweepManager | None = None

    @property
    def uploads_dir(self) -> Path:
        return self.jobs.workspace / "uploads"
