def brevity(completions, **references):
    return [1.0 for c in completions]

def broken(completions, **references)
    return []
