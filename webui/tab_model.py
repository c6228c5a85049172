"""Model tab: the embedded default is preselected; a local folder or hub id can replace it."""

from __future__ import annotations

import gradio as gr

from webui.forms import controls
from webui.tab import Controls, Tab
from webui.template_line import template_line


class ModelTab(Tab):
    title, id = "Model", "model"

    def build(self) -> Controls:
        gr.Markdown(
            "`default` is the embedded **SmolLM2-135M-Instruct** (135M parameters). It ships with TuneForge and "
            "works offline. Put a local Hugging Face model folder or a hub id (when online) here to use another "
            "model."
        )
        options = controls("model")
        template_line(self.ctx, options)  # which chat template the model trains with
        return options
