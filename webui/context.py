"""What every tab builder needs: the backend singletons and the workspace paths."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from backend.runs.manager import JobManager
from backend.serving.chat import ChatEngine


@dataclass
class AppContext:
    jobs: JobManager
    chat: ChatEngine
    blocks: gr.Blocks

    @property
    def uploads_dir(self) -> Path:
        return self.jobs.workspace / "uploads"
