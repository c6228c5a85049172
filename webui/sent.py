"""What a timed view last sent to its page, so that a tick answers with what changed and skips the rest.

A timer redraws a view every 2 s. Sent again unchanged, a chart or a table is drawn again in the
browser (Plotly rebuilds the whole figure), though a run logs a step every few seconds on a CPU and a
finished run never changes. So a timed view keeps, beside the inputs it was drawn from, a digest of each
output it sent; a tick with the same inputs sends only the outputs whose digest moved. Any other event
that draws the view forgets that memory, so the next tick sends everything again.

The memory is kept by the page (a hidden JSON component), not by the server (a `gr.State`), and travels in
the same answer as the outputs it describes, so the page's memory is always that of what it shows. Ticks
skip the queue and overlap on a busy server: one drawn before a run's last step can answer after the next
tick, drawn once the run ended. With the memory on the server, the later tick's memory ("completed") could
be written before the earlier tick's outputs ("running, step 0") reached the page, and every tick after
skipped them as sent: the page showed a finished run as running for good (a 300 s browser test failure,
2026-12-07). A memory that is not this module's (a hostile page's) counts as none.
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
    """One page's memory of a view's last sent outputs: it goes in and out of every event that draws the view."""

    def __init__(self):
        self.memory = gr.JSON(None, visible=False)

    def tick(self, timer: gr.Timer, draw: Callable, inputs: list, outputs: list) -> None:
        """Draw the view on every tick of the timer, sending only what changed."""
        wired = ([*inputs, self.memory], [*outputs, self.memory])
        timer.tick(self.ticking(draw), *wired, show_progress="hidden", **STATUS)

    def redraw_on(self, trigger: Callable, draw: Callable, inputs: list, outputs: list) -> None:
        """Draw the whole view on another event (trigger: a listener, such as `dropdown.change`)."""
        trigger(self.forgetting(draw), inputs, [*outputs, self.memory], **STATUS)

    def ticking(self, draw: Callable) -> Callable:
        """draw(*inputs) → outputs, as a tick: inputs + memory → each output or a skip, + the new memory."""

        def tick(*args):
            *inputs, memory = args
            outputs = draw(*inputs)
            key, digests = digest(inputs), [digest(o) for o in outputs]
            before = _digests_for(memory, key, len(outputs))
            if before == digests:
                return *(gr.skip() for _ in outputs), gr.skip()  # the page's memory already says all this
            if before:
                outputs = [gr.skip() if d == old else o for o, d, old in zip(outputs, digests, before, strict=True)]
            return *outputs, {"key": key, "digests": digests}

        return tick

    def forgetting(self, draw: Callable) -> Callable:
        """draw(*inputs) → outputs, drawn whole: the memory is dropped, so the next tick sends everything."""

        def whole(*args):
            return *draw(*args), None

        return whole


def _digests_for(memory, key: str, count: int) -> list[str] | None:
    """The digests a page's memory holds for these inputs, or None (no memory, other inputs, or not ours)."""
    if not isinstance(memory, dict) or memory.get("key") != key:
        return None
    digests = memory.get("digests")
    if isinstance(digests, list) and len(digests) == count and all(isinstance(d, str) for d in digests):
        return digests
    return None
