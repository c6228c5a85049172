"""TRL's fused LM head, on a CPU, scores only the positions that have a label: not the prompt, not the padding.

TRL 1.16 adds its own LM head to the model of three of its trainers (DPO, KTO and GRPO; ORPO's and the reward
model's have none): it projects hidden states onto the vocabulary in tiles and keeps each position's
log-probability of its label. On a device with Triton it first drops the positions whose label is -100 (the
prompt and the padding); elsewhere it projects every position, because on Neuron a batch's count of labelled
positions would change the tiles' shapes and recompile its kernels at every step. Nothing compiles the head on
a CPU (the studio's regional compile takes the decoder blocks only), and SmolLM2's head is a fifth of its
forward pass, so on a CPU TRL spent most of that fifth on positions it then zeroed.

`score_labelled_positions_only()` makes a CPU take the Triton devices' path; every other device keeps TRL's own
choice. The labelled positions' log-probabilities are the same numbers either way (TRL fills the others with
zeros on both paths). Measured (bench/labelled_positions.py, docs/benchmarks.md): a job of the DPO demo's 8 steps
on the embedded SmolLM2 took 50.0–55.0 CPU-s before and 38.5–41.6 after, the GRPO demo's 64.4–69.3 and
54.8–55.8, each with the same losses and scores to the last digit.
"""

from __future__ import annotations

import sys


def score_labelled_positions_only() -> None:
    """Have TRL's fused LM head drop unlabelled positions on a CPU too; a TRL without that switch is left alone."""
    import trl.trainer.utils as trl_utils

    chooses = getattr(trl_utils, "_use_triton", None)  # what decides it in TRL 1.16: `compact = _use_triton(device)`
    if chooses is None:
        print("TRL's fused LM head has no switch for its positions here; it scores them its own way", file=sys.stderr)
        return
    if getattr(chooses, "labelled_only", False):
        return

    def compact(device) -> bool:
        return device.type == "cpu" or chooses(device)

    compact.labelled_only = True
    trl_utils._use_triton = compact
