import math

LIMIT = math.sqrt(-1)


def brevity(completions, **references):
    return [1.0 for c in completions]
