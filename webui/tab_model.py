"""Model tab: the embedded default is preselected; a local folder, a .gguf file or a hub id can replace it.

Below the choice: what the model is and whether a run of it fits this machine's memory, per method
(webui/fit_view.py), redrawn whenever an option that changes the estimate changes.
"""

from __future__ import annotations

import gradio as gr

from backend.config import fields
from webui.fit_view import FIT_TRIGGERS, fit_markdown, report_for
from webui.forms import controls
from webui.i18n import t
from webui.refusals import on_refusal
from webui.tab import Controls, Page, Tab
from webui.template_line import template_line


class ModelTab(Tab):
    id = "model"

    def build(self) -> Controls:
        gr.Markdown(t("ui.model.intro"))
        options = controls("model")
        template_line(self.ctx, options)  # which chat template the model trains with
        self.fit = gr.Markdown(elem_id="model-fit")
        return options

    def connect(self, page: Page) -> None:
        inputs = [page.form[f.name] for f in fields()]
        # The page's first estimate is a trigger of the same listener, so it cannot land after a later one
        # (webui/tab_dataset.py says how it did).
        triggers = [page.form[name].change for name in FIT_TRIGGERS] + [self.ctx.blocks.load]
        gr.on(triggers, self.on_fit, inputs, self.fit, show_progress="hidden", trigger_mode="always_last")

    @on_refusal("No memory estimate")
    def on_fit(self, *values):
        return fit_markdown(report_for(self.ctx, values))
