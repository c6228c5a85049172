"""What a timed view last sent to its page, so that a tick answers with what changed and skips the rest.

A timer redraws a view every 2 s. Sent again unchanged, a chart or a table is drawn again in the
browser (Plotly rebuilds the whole figure), though a run logs a step every few seconds on a CPU and a
finished run never changes. So a timed view keeps in the page's own state, beside the
inputs it was drawn from, a digest of each output it sent; a tick with the same inputs sends only the
outputs whose digest moved. Any other event that draws the view forgets that memory, so the next tick
sends everything again: a page never keeps an output the server did not draw for its current inputs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable

import gradio as gr
import pandas as pd

from webui.lanes import STATUS


def digest(value) -> str:
    return hashlib.blake2b(_text(value).encode(), digest_size=16).hexdigest()


def _text(value) -> str:
    if isinstance(value, pd.DataFrame):
        return value.to_json(orient="split", date_format="iso")
    if hasattr(value, "to_plotly_json"):  # a Plotly figure: its repr leaves data out
        return value.to_json()
    if isinstance(value, dict):
        return "{" + ",".join(f"{k!r}:{_text(v)}" for k, v in sorted(value.items(), key=lambda kv: str(kv[0]))) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(_text(v) for v in value) + "]"
    return repr(value)


class SentMemory:
    """One page's memory of a view's last sent outputs: its state goes in and out of every event that draws it."""

    def __init__(self):
        self.state = gr.State(None)

    def tick(self, timer: gr.Timer, draw: Callable, inputs: list, outputs: list) -> None:
        """Draw the view on every tick of the timer, sending only what changed."""
        wired = ([*inputs, self.state], [*outputs, self.state])
        timer.tick(self.ticking(draw), *wired, show_progress="hidden", **STATUS)

    def redraw_on(self, trigger: Callable, draw: Callable, inputs: list, outputs: list) -> None:
        """Draw the whole view on another event (trigger: a listener, such as `dropdown.change`)."""
        trigger(self.forgetting(draw), inputs, [*outputs, self.state], **STATUS)

    def ticking(self, draw: Callable) -> Callable:
        """draw(*inputs) → outputs, as a tick: inputs + memory → each output or a skip, + the new memory."""

        def tick(*args):
            *inputs, memory = args
            outputs = draw(*inputs)
            key, digests = digest(inputs), [digest(o) for o in outputs]
            if memory and memory["key"] == key:
                before = memory["digests"]
                outputs = [gr.skip() if d == old else o for o, d, old in zip(outputs, digests, before, strict=True)]
            return *outputs, {"key": key, "digests": digests}

        return tick

    def forgetting(self, draw: Callable) -> Callable:
        """draw(*inputs) → outputs, drawn whole: the memory is dropped, so the next tick sends everything."""

        def whole(*args):
            return *draw(*args), None

        return whole
