"""The Model tab's line saying which chat template a run will train with: the model's own, or the named fallback."""

from __future__ import annotations

from functools import partial

import gradio as gr

from backend.errors import TuneForgeError
from backend.models.template_choice import describe_template, model_template
from webui.context import AppContext
from webui.lanes import STATUS
from webui.tab import Controls


def template_text(ctx: AppContext, spec: str, fallback: str) -> str:
    try:
        ctx.jobs.confinement.model(spec or "", "model")  # else the line would tell what any folder holds
        used = model_template(spec, fallback)
    except TuneForgeError as exc:
        return f"**Chat template:** not known yet ({exc})."
    return f"**Chat template:** {describe_template(used, fallback)}."


def template_line(ctx: AppContext, form: Controls) -> gr.Markdown:
    """The line, under the model and template controls, redrawn whenever either changes (it reads only small files)."""
    model, template = form["model"], form["template"]
    line = gr.Markdown(template_text(ctx, model.value, template.value), elem_id="model-template")
    for control in (model, template):
        control.change(partial(template_text, ctx), [model, template], line, **STATUS)
    return line
