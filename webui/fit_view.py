"""Will it fit, on the page: `backend.fit.model_report` as the Model tab's table and the Train tab's warning line."""

from __future__ import annotations

from backend.errors import TuneForgeError
from backend.fit import gb, model_report
from webui.context import AppContext
from webui.forms import options_from
from webui.i18n import say, say_line

# Options that change the estimate: the form redraws it when one of them changes.
FIT_TRIGGERS = ("model", "task", "method", "freeze_trainable_layers", "per_device_train_batch_size", "cutoff_len")
FIT_TRIGGERS += ("lora_rank", "lora_target", "precision", "quantization_bit")
FIT_TRIGGERS += ("image_max_pixels", "freeze_vision_tower", "freeze_multi_modal_projector")


def report_for(ctx: AppContext, values) -> dict:
    """The report for the form's values; the model is confined like a start's (a browser names it)."""
    options = options_from(values)
    ctx.jobs.confinement.model(str(options.get("model") or "default"))
    return model_report(options)


def fit_markdown(report: dict) -> str:
    """The architecture line, a table of methods against free memory, QLoRA's saving, and the warning."""
    head = say(
        "msg.fit_head",
        architecture=report["architecture"] or say("msg.fit_unknown_architecture"),
        model_type=report["model_type"] or "?",
        parameters=count(report["parameters"]),
        layers=report["layers"],
        hidden=report["hidden_size"],
        vocabulary=f"{report['vocab_size']:,}",
    )
    where = say("msg.fit_gpu_memory") if report["device"] == "gpu" else say("msg.fit_ram")
    free = (
        say("msg.fit_free", amount=gb(report["free_mb"]), where=where)
        if report["free_mb"] is not None
        else say("msg.fit_free_unknown", where=where)
    )
    intro = say("msg.fit_intro", tokens=f"{report['batch_tokens']:,}", free=free)
    if report.get("image_tokens"):  # a vision model: before the intro, which leads into the table
        images = say("msg.fit_images", tokens=report["image_tokens"], positions=report["image_positions"])
        intro = f"{images}\n\n{intro}"
    lines = [head, "", intro, "", say("msg.fit_table_head"), "|---|---|---|---|---|---|---|---|---|"]
    lines += [_row(row, row["method"] == report["run"]["method"]) for row in report["fit"]]
    notes = [line for line in (qlora_saving(report), say_line(report["warning"])) if line]
    return "\n\n".join(["\n".join(lines), *notes])  # a note on the line after a table would join the table


def _row(row: dict, chosen: bool) -> str:
    name = say("msg.fit_chosen", method=row["method"]) if chosen else row["method"]
    if "unavailable" in row:
        return f"| {name} | {say('msg.fit_not_here', why=say_line(row['unavailable']))} | | | | | | | |"
    fits = "?" if row["fits"] is None else say("msg.fit_yes") if row["fits"] else say("msg.fit_no")
    return (
        f"| {name} | {row['precision']} | {count(row['trainable'])} | {gb(row['weights_mb'])} | "
        f"{gb(row['gradients_mb'] + row['optimizer_mb'])} | {gb(row['activations_mb'] + row['logits_mb'])} | "
        f"{gb(row['runtime_mb'])} | **{gb(row['total_mb'])}**{_while_loading(row)} | {fits} |"
    )


def _while_loading(row: dict) -> str:
    """Where a quantized base's load peaks above its training, the total is that peak: say so beside it."""
    return say("msg.fit_while_loading") if row.get("loading_mb", 0) > row.get("training_mb", 0) else ""


def qlora_saving(report: dict) -> str:
    """What 4-bit QLoRA saves against LoRA on this model, where both run here."""
    rows = {row["method"]: row for row in report["fit"] if "unavailable" not in row}
    lora, qlora = rows.get("lora"), rows.get("qlora")
    if not lora or not qlora or lora["total_mb"] <= qlora["total_mb"]:
        return ""
    return say(
        "msg.fit_qlora_saving",
        saved=gb(lora["total_mb"] - qlora["total_mb"]),
        lora=gb(lora["weights_mb"]),
        qlora=gb(qlora["weights_mb"]),
    )


def count(n: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(n)


def warning_for(ctx: AppContext, values) -> str:
    """The Train tab's line above Start: the warning when the chosen run may not fit, else nothing.

    A model the estimate cannot read shows nothing here; the Model tab says why.
    """
    try:
        return say_line(report_for(ctx, values)["warning"])
    except TuneForgeError:
        return ""
