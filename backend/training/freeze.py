"""Freeze tuning (LLaMA-Factory's `finetuning_type: freeze`): train a few decoder layers, keep the rest fixed.

`freeze_trainable_layers: N` trains the last N decoder layers; a negative N trains the first |N|.
Embeddings, the final norm and the head stay frozen, as in LLaMA-Factory's default. The result
is a full model folder, since every weight file must hold the trained layers.
"""

from __future__ import annotations

from backend.errors import TuneForgeError


def find_decoder_layers(model):
    """The model's stack of decoder layers: the ModuleList as long as config.num_hidden_layers (None: not found)."""
    import torch

    count = getattr(model.config, "num_hidden_layers", None)
    stacks = [
        (name, module)
        for name, module in model.named_modules()
        if isinstance(module, torch.nn.ModuleList) and len(module) == count
    ]
    if not stacks:
        return None
    # A vision tower could match the count too; the language model's stack is conventionally called `layers`.
    stacks.sort(key=lambda item: not item[0].endswith("layers"))
    return stacks[0][1]


def decoder_layers(model):
    """The model's stack of decoder layers, or a one-line refusal of freeze tuning."""
    layers = find_decoder_layers(model)
    if layers is None:
        raise TuneForgeError(f"method freeze: cannot find the decoder layers of {type(model).__name__}; use lora")
    return layers


def train_only_layers(model, trainable_layers: int) -> list[int]:
    """Freeze every weight but those of the chosen decoder layers; returns the trained layer indices."""
    layers = decoder_layers(model)
    if trainable_layers == 0 or abs(trainable_layers) > len(layers):
        raise TuneForgeError(
            f"freeze_trainable_layers={trainable_layers}: the model has {len(layers)} decoder layers; "
            f"choose 1 to {len(layers)} (or -1 to -{len(layers)} for the first ones)"
        )
    if trainable_layers > 0:
        chosen = list(range(len(layers) - trainable_layers, len(layers)))
    else:
        chosen = list(range(-trainable_layers))
    model.requires_grad_(False)
    for index in chosen:
        layers[index].requires_grad_(True)
    return chosen
