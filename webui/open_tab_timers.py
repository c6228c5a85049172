"""A tab's timers tick only while the tab is open.

A timer that Gradio has drawn keeps ticking after its tab is closed. Each tick is a request the app answers
and the whole page processes, whether its tab shows or not: with the timers of every visited tab ticking
(six requests a second), an idle page on the Train tab cost its browser and app 27 CPU-s a 40 s, against
14 with only the open tab's (2-core Zen 3, headless Chromium). So opening a tab, by a click or by an
event that switches to it (Tab.select fires for both, and for the first tab as the page loads), starts its
timers and stops the others'.

- Every timer is built active. Gradio draws a tab's components at its first opening, and under load the
  select event's answer could come before them; a timer built inactive then missed it and never ticked.
  A tab never opened draws no timer, so none ticks before its first opening.
- Tab switches are answered one at a time, in order (webui/lanes.py's TABS): the load's select of the
  first tab, answered late under load, stopped the timers of a tab opened right after it.

The app's check for finished runs (webui/app.py) keeps ticking on every tab: the run lists follow it. A tab
that must be current the moment it opens draws itself on its own select event.
"""

from __future__ import annotations

import gradio as gr

from webui.lanes import TABS
from webui.tab import Tab


def tick_while_open(tabs: list[Tab]) -> None:
    timed = [(tab, timer) for tab in tabs for timer in tab.timers()]
    timers = [timer for _, timer in timed]
    for tab in tabs:

        def opened(tab=tab):
            return [gr.update(active=owner is tab) for owner, _ in timed]

        tab.item.select(opened, None, timers, show_progress="hidden", **TABS)
