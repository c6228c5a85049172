"""Will it fit, on the page: `backend.fit.model_report` as the Model tab's table and the Train tab's warning line."""

from __future__ import annotations

from backend.errors import TuneForgeError
from backend.fit import gb, model_report
from webui.context import AppContext
from webui.forms import options_from

# Options that change the estimate: the form redraws it when one of them changes.
FIT_TRIGGERS = ("model", "task", "method", "freeze_trainable_layers", "per_device_train_batch_size", "cutoff_len")
FIT_TRIGGERS += ("lora_rank", "lora_target", "precision", "quantization_bit")


def report_for(ctx: AppContext, values) -> dict:
    """The report for the form's values; the model is confined like a start's (a browser names it)."""
    options = options_from(values)
    ctx.jobs.confinement.model(str(options.get("model") or "default"))
    return model_report(options)


def fit_markdown(report: dict) -> str:
    """The architecture line, a table of methods against free memory, QLoRA's saving, and the warning."""
    head = (
        f"**{report['architecture'] or 'unknown architecture'}** (`{report['model_type'] or '?'}`) · "
        f"{count(report['parameters'])} parameters · {report['layers']} layers, hidden {report['hidden_size']}, "
        f"vocabulary {report['vocab_size']:,}"
    )
    where = "GPU memory" if report["device"] == "gpu" else "RAM"
    free = f"{gb(report['free_mb'])} of free {where}" if report["free_mb"] is not None else f"free {where} unknown"
    intro = (
        f"**Will it fit?** {report['batch_tokens']:,} tokens a step at most (batch × cutoff_len), against {free}. "
        "Each method in the precision it runs in here:"
    )
    lines = [head, "", intro, "", "| method | precision | trains | weights | grads + AdamW | activations + logits "
             "| runtime | total | fits |", "|---|---|---|---|---|---|---|---|---|"]  # fmt: skip
    lines += [_row(row, row["method"] == report["run"]["method"]) for row in report["fit"]]
    notes = [line for line in (qlora_saving(report), report["warning"]) if line]
    return "\n\n".join(["\n".join(lines), *notes])  # a note on the line after a table would join the table


def _row(row: dict, chosen: bool) -> str:
    name = f"**{row['method']}** (chosen)" if chosen else row["method"]
    if "unavailable" in row:
        return f"| {name} | not here: {row['unavailable']} | | | | | | | |"
    fits = "?" if row["fits"] is None else "yes" if row["fits"] else "**no**"
    return (
        f"| {name} | {row['precision']} | {count(row['trainable'])} | {gb(row['weights_mb'])} | "
        f"{gb(row['gradients_mb'] + row['optimizer_mb'])} | {gb(row['activations_mb'] + row['logits_mb'])} | "
        f"{gb(row['runtime_mb'])} | **{gb(row['total_mb'])}** | {fits} |"
    )


def qlora_saving(report: dict) -> str:
    """What 4-bit QLoRA saves against LoRA on this model, where both run here."""
    rows = {row["method"]: row for row in report["fit"] if "unavailable" not in row}
    lora, qlora = rows.get("lora"), rows.get("qlora")
    if not lora or not qlora or lora["total_mb"] <= qlora["total_mb"]:
        return ""
    return (
        f"qlora instead of lora saves about **{gb(lora['total_mb'] - qlora['total_mb'])}** "
        f"(weights {gb(lora['weights_mb'])} → {gb(qlora['weights_mb'])}; gradient checkpointing keeps fewer "
        "activations); it trains slower."
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
        return report_for(ctx, values)["warning"]
    except TuneForgeError:
        return ""
