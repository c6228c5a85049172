"""The one shape every tab has: a class that lays out its components, then wires their events.

Why a class, and why two steps:

- A tab's handlers read and write its components, and several handlers share them. As methods they
  reach them through `self`, have names, and can be read (and tested, as the Dataset tab's inspection
  is) on their own; as closures inside one builder they made functions of 100-150 lines.
- Some events reach across tabs: the training form's options live on the Dataset, Model and Train
  tabs, and every one of them is an input to Check, Preview and Start; Runs opens a run in Train and
  switches tabs. So the app first builds every tab, inside its `gr.Tab`, and only then connects each
  one to the finished `Page`. A tab never has to know which tabs come after it.

`build()` returns the option controls it placed (most tabs place none); the app merges them into
`Page.form`. Handler errors are shown through `webui.refusals`, never caught in the tab itself.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import gradio as gr

from webui.context import AppContext

Controls = dict[str, gr.components.Component]


@dataclass
class Page:
    """What exists once every tab is built: the tab strip, the form's controls by option name, and the completed
    runs (their ids, newest first), which change when a run completes: the run lists follow them."""

    tabs: gr.Tabs
    form: Controls
    finished: gr.State


class Tab:
    id: ClassVar[str]  # what `gr.Tabs(selected=...)` switches to; the strip's label is the catalogues' tabs.<id>

    def __init__(self, ctx: AppContext):
        self.ctx = ctx
        self.item: gr.Tab | None = None  # its gr.Tab, set by the app: opening a tab is its `select` event

    def build(self) -> Controls:
        """Lay out the components inside the current gr.Tab; return the form's option controls among them."""
        raise NotImplementedError

    def connect(self, page: Page) -> None:
        """Wire the events, once every tab's components exist (a tab without events has nothing to do)."""

    def timers(self) -> list[gr.Timer]:
        """The timers that keep this tab's views live: they tick only while it is open (webui/open_tab_timers.py)."""
        timer = getattr(self, "timer", None)
        return [timer] if timer is not None else []
