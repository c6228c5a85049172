"""A user's own rewards, as a user writes them: plain functions of the completions and the reference columns."""


def brevity(completions, prompts, **references):
    """Shorter answers earn more: 1 for an empty answer, falling towards 0."""
    return [1.0 / (1 + len(c)) for c in completions]


def score(completions, prompts, answer, **references):
    """1 where the reference answer appears in the completion."""
    return [float(str(a) in c) for c, a in zip(completions, answer, strict=True)]
