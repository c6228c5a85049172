def brevity(completions, **references):
    lengths = [len(c) for c in completions]
    return [1.0 / (n - n) for n in lengths]
