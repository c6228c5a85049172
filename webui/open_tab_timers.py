"""A tab's timers tick only while the tab is open, switched in the page itself.

Gradio keeps ticking a timer it has drawn after its tab closes. Each tick is a request the app answers and a
message the whole page processes (Gradio's status bookkeeping walks every component: about 0.2 s of script a
message on a 2-core Zen 3 when this was written, webui/progress_targets.py), whether its tab shows or not. A
page that had opened every tab and sat on Train kept its browser and app a core busy; with only the open tab's
timers, under half of one (bench/idle_page.py, docs/benchmarks.md).

So opening a tab (Tab.select: a click, an event that switches to it, and the first tab as the page loads)
runs a script in the page, with no request, that parks the timers of every other drawn tab at an hour and
gives the rest their own interval back. What it reads, it reads from the page as it is when it runs:

- a tab counts as open if its select fired or the strip shows it selected, so a select that runs late
  (the page's first, as it loads) cannot park the tab a person opened since;
- a tab not drawn yet is never sent a parked interval: Gradio draws a tab's components at its first
  opening, and a value sent before that must not be what its timer starts with.

Two earlier tries, one that set the timers' `active` from the server and one that sent each switch fixed
intervals from the page, failed the recipe browser test under load: its timer never ticked (three full runs
in four, and one run of the four browser files). The cause was not pinned down; the two rules above remove
every way a late or early switch could park the open tab (bench/idle_page.py measures the saving).

The app's check for finished runs (webui/app.py) keeps ticking on every tab: the run lists follow it. A tab
that must be current the moment it opens draws itself on its own select event.
"""

from __future__ import annotations

import json

from webui.tab import Tab

PARKED_S = 3600.0  # a closed tab's timer interval: its own comes back when the tab opens again

# The strip's ids: a tab's panel is `tab-<id>` (webui/app.py), drawn at its first opening, and its button
# `tab-<id>-button`, which Gradio marks aria-selected.
OPEN_INTERVALS = """() => {{
  const owners = {owners}, intervals = {intervals};
  const live = (id) => id === {opened} || !document.getElementById(`tab-${{id}}`)
    || document.getElementById(`tab-${{id}}-button`)?.getAttribute("aria-selected") === "true";
  return owners.map((id, i) => (live(id) ? intervals[i] : {parked}));
}}"""


def intervals_script(owners: list[str], intervals: list[float], opened: str) -> str:
    """The page's script run as tab `opened` opens: each timer's interval, by the id of the tab that owns it."""
    return OPEN_INTERVALS.format(
        owners=json.dumps(owners), intervals=json.dumps(intervals), opened=json.dumps(opened), parked=PARKED_S
    )


def tick_while_open(tabs: list[Tab]) -> None:
    timed = [(tab, timer) for tab in tabs for timer in tab.timers()]
    owners, intervals = [tab.id for tab, _ in timed], [timer.value for _, timer in timed]
    timers = [timer for _, timer in timed]
    for tab in tabs:
        tab.item.select(None, None, timers, js=intervals_script(owners, intervals, tab.id), queue=False)
