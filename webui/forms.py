"""Widgets built from the config dataclass: one field, one control, never defined twice."""

from __future__ import annotations

import dataclasses

import gradio as gr

from backend.capability import hardware_summary, unavailable_choices
from backend.config import TEXT_OPTION_MAX, fields
from webui.i18n import option_help, option_label

Field = dataclasses.Field


def option_fields(group: str | None = None) -> list[Field]:
    return [f for f in fields() if group is None or f.metadata["group"] == group]


def control(f: Field, **overrides) -> gr.components.Component:
    """A Gradio control for one option: choices become a dropdown or radio, numbers get bounds."""
    meta = f.metadata
    common = {"label": option_label(f), "info": option_help(f), "value": f.default, "elem_id": f"opt-{f.name}"}
    common.update(overrides)
    if f.type == "bool":
        return gr.Checkbox(**common)
    if meta["widget"] == "column":
        # Filled with the file's columns once a dataset is inspected; free text stays allowed.
        return gr.Dropdown(choices=[""], allow_custom_value=True, **common)
    if meta["choices"]:
        choices = list(common.pop("choices", meta["choices"]))
        widget = gr.Radio if len(meta["choices"]) <= 3 or meta["widget"] == "radio" else gr.Dropdown
        return widget(choices=choices, **common)
    if f.type in ("int", "float"):
        precision = 0 if f.type == "int" else None
        lo, hi = meta["min"], meta["max"]
        if f.type == "float" and lo == 0.0 and hi is not None and hi <= 1.0:  # shares and rates, not lr
            return gr.Slider(minimum=lo, maximum=hi, step=0.01, **common)
        return gr.Number(minimum=lo, maximum=hi, precision=precision, **common)
    # The backend's own limit (backend.config: max_len), so the page stops typing where a Start would refuse.
    return gr.Textbox(max_length=meta["max_len"] or TEXT_OPTION_MAX, **common)


def controls(group: str) -> dict[str, gr.components.Component]:
    """The group's controls; choices this machine cannot run are left out, and the help says why."""
    overrides = hardware_overrides(unavailable_choices(hardware_summary()))
    return {f.name: control(f, **overrides.get(f.name, {})) for f in option_fields(group)}


def hardware_overrides(refused: dict[str, dict]) -> dict[str, dict]:
    """Widget settings offering only the choices the hardware runs; an option left one choice is disabled."""
    overrides = {}
    for f in option_fields():
        if f.name not in refused:
            continue
        kept = [c for c in f.metadata["choices"] if c not in refused[f.name]]
        why = "; ".join(f"{choice}: {reason}" for choice, reason in refused[f.name].items())
        overrides[f.name] = {"choices": kept, "info": f"{option_help(f)} Not on this machine — {why}."}
        if len(kept) == 1:
            overrides[f.name]["interactive"] = False
    return overrides


def options_from(values) -> dict:
    """Positional widget values, in config field order, as an options dict."""
    return {f.name: value for f, value in zip(fields(), values, strict=True)}


def form_updates(options: dict) -> tuple[list, list[str]]:
    """Widget values, in config field order, that show a saved config in the form (cloning, loading YAML).

    A value this machine cannot run (a GPU run's qlora, say) is not offered by its control, so
    that control keeps what it shows; the second result names each such value and why.
    """
    from backend.config import TrainConfig

    config = TrainConfig.from_dict(options).to_dict()
    config.update(output_dir="", resume_from_checkpoint="")  # a loaded config starts a new run
    refused = unavailable_choices(hardware_summary())
    updates, kept = [], []
    for f in fields():
        reason = refused.get(f.name, {}).get(config[f.name])
        if reason:
            kept.append(f"{f.name}={config[f.name]} was not loaded: {reason}")
        updates.append(gr.update() if reason else gr.update(value=config[f.name]))
    return updates, kept


def kept_notes(kept: list[str]) -> list[str]:
    """form_updates' refusals, for the message under the form: what the form kept, and why."""
    return [f"**{note}**; the form keeps its own value." for note in kept]
