"""Widgets built from the config dataclass: one field, one control, never defined twice."""

from __future__ import annotations

import dataclasses

import gradio as gr

from backend.config import fields

Field = dataclasses.Field


def option_fields(group: str | None = None) -> list[Field]:
    return [f for f in fields() if group is None or f.metadata["group"] == group]


def control(f: Field, **overrides) -> gr.components.Component:
    """A Gradio control for one option: choices become a dropdown or radio, numbers get bounds."""
    meta = f.metadata
    common = {"label": meta["label"] or f.name, "info": meta["help"], "value": f.default, "elem_id": f"opt-{f.name}"}
    common.update(overrides)
    if f.type == "bool":
        return gr.Checkbox(**common)
    if meta["widget"] == "column":
        # Filled with the file's columns once a dataset is inspected; free text stays allowed.
        return gr.Dropdown(choices=[""], allow_custom_value=True, **common)
    if meta["choices"]:
        widget = gr.Radio if len(meta["choices"]) <= 3 or meta["widget"] == "radio" else gr.Dropdown
        return widget(choices=list(meta["choices"]), **common)
    if f.type in ("int", "float"):
        precision = 0 if f.type == "int" else None
        lo, hi = meta["min"], meta["max"]
        if f.type == "float" and lo == 0.0 and hi is not None and hi <= 1.0:  # shares and rates, not lr
            return gr.Slider(minimum=lo, maximum=hi, step=0.01, **common)
        return gr.Number(minimum=lo, maximum=hi, precision=precision, **common)
    return gr.Textbox(**common)


def controls(group: str, overrides: dict[str, dict] | None = None) -> dict[str, gr.components.Component]:
    """The group's controls; overrides maps an option to widget settings, e.g. disabled where the hardware can't."""
    overrides = overrides or {}
    return {f.name: control(f, **overrides.get(f.name, {})) for f in option_fields(group)}


def options_from(values) -> dict:
    """Positional widget values, in config field order, as an options dict."""
    return {f.name: value for f, value in zip(fields(), values, strict=True)}


def form_updates(options: dict) -> list:
    """Widget values, in config field order, that show a saved config in the form (cloning, loading YAML)."""
    from backend.config import TrainConfig

    config = TrainConfig.from_dict(options).to_dict()
    config.update(output_dir="", resume_from_checkpoint="")  # a loaded config starts a new run
    return [gr.update(value=config[f.name]) for f in fields()]
