"""Rewards computed with numpy, as many users compute them: numpy's own number types come back."""

import numpy as np


def float32_scores(completions, **references):
    return list(np.array([len(c) > 0 for c in completions], dtype=np.float32))


def counted(completions, **references):
    return [np.sum([ch.isdigit() for ch in c]) for c in completions]  # numpy integers
