"""Three rewards that each return the wrong thing."""


def not_a_list(completions, **references):
    return 1.0


def wrong_length(completions, **references):
    return [1.0]


def a_string(completions, **references):
    return ["good" for c in completions]
