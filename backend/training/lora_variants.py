"""The LoRA variants LLaMA-Factory offers, through PEFT: DoRA, rsLoRA, PiSSA initialisation and LoRA+.

DoRA and rsLoRA are settings of PEFT's LoraConfig and need nothing more. The other two reach
beyond the adapter:
  - PiSSA starts the adapter from the weights' principal singular vectors and leaves the rest in
    the base, so the trained adapter only fits that changed base. The adapter as initialised is
    kept beside the run, and the final save turns the trained one into a plain LoRA adapter of
    twice the rank (PEFT's path_initial_model_for_weight_conversion), which loads with plain
    PeftModel.from_pretrained on the unchanged model. Checkpoints stay unconverted: resuming
    recomputes the same base from the seed.
  - LoRA+ trains each B matrix loraplus_lr_ratio times faster than its A matrix. Its optimizer is
    handed to the Trainer as a factory, so the Trainer still builds it when it builds its own
    (after any wrapping of the model), and a resumed run restores its state as it would its own.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from backend.config import TrainConfig

PISSA_INIT_DIR = "pissa_init"  # PEFT names the adapter it loads for the conversion after this folder


def lora_variant_options(cfg: TrainConfig) -> dict:
    """LoraConfig's keywords for the variants the config asks for."""
    options = {"use_dora": cfg.use_dora, "use_rslora": cfg.use_rslora}
    if cfg.pissa_init:
        options["init_lora_weights"] = "pissa" if cfg.pissa_iter == -1 else f"pissa_niter_{cfg.pissa_iter}"
    return options


def keep_initial_adapter(model, run_dir: Path) -> Path:
    """Save the PiSSA adapter before any step, which the conversion at the end subtracts from the trained one."""
    folder = run_dir / PISSA_INIT_DIR
    config = model.peft_config["default"]
    init, config.init_lora_weights = config.init_lora_weights, True  # loaded back, it must not run the SVD again
    try:
        model.save_pretrained(str(folder), safe_serialization=True)
    finally:
        config.init_lora_weights = init
    return folder


def save_converted_adapter(model, folder: Path, run_dir: Path) -> None:
    """The trained PiSSA adapter as plain LoRA: (A | A0) and (B | -B0) add B·A − B0·A0 to the unchanged weights."""
    initial = run_dir / PISSA_INIT_DIR
    model.save_pretrained(str(folder), safe_serialization=True, path_initial_model_for_weight_conversion=str(initial))


def drop_initial_adapter(run_dir: Path) -> None:
    shutil.rmtree(run_dir / PISSA_INIT_DIR, ignore_errors=True)


def use_loraplus(trainer, ratio: float) -> None:
    """Have the Trainer build a LoRA+ optimizer: its own optimizer class and settings, B matrices faster."""
    from peft.optimizers import create_loraplus_optimizer

    optimizer_cls, optimizer_kwargs = trainer.get_optimizer_cls_and_kwargs(trainer.args, trainer.model)
    weight_decay = trainer.args.weight_decay

    def build(model, **kwargs):
        return create_loraplus_optimizer(
            model, optimizer_cls, loraplus_lr_ratio=ratio, loraplus_weight_decay=weight_decay, **kwargs
        )

    # Not an Optimizer class, so the Trainer calls it as a factory: factory()(model, **kwargs).
    trainer.optimizer_cls_and_kwargs = (lambda: build, optimizer_kwargs)
