"""Where an event shows its progress: only where someone waits for it, because the page pays for every target.

Gradio's page keeps the loading status of every component that has ever been a progress target of an
event that ran (by default: each of the event's outputs). On every status message of every later event
(two or more each: pending, then complete) it updates all of them, finding each by a walk of the
component tree (about 480 components here) and cloning its value; a target that is a layout (the tab
strip, a group) clones every component inside it. Measured on a 2-core Zen 3 (bench/progress_cost.py):
once a load event had shown progress on 300 components, each one-output tick cost the page 0.16 s of
script; with no targets on either event, 0.007 s. Here, a Clone (88 outputs) or opening a run in Train
(the tab strip) made every later click, tick and streamed chunk pay that, for as long as the page stayed
open.

So:
- an event that shows no progress (`show_progress="hidden"`) or is a quick read outside the queue
  (`queue=False`: status reads, lists, redraws and the timers, webui/lanes.py) has no targets at all;
  a spinner there would only flash;
- an event that fills many controls or switches the tab shows its progress on the one line that says
  what happened (`show_progress_on=` where it is wired);
- every other event keeps Gradio's default, its outputs: a chat's reply, an evaluation's table.

`narrow(blocks)` applies the first rule to the built app, so an event added later follows it too;
`check(blocks)` is what the tests assert.
"""

from __future__ import annotations

import gradio as gr

# More progress targets than this means an event that fills a form or a whole view: it names its one line.
MAX_TARGETS = 8
# Blocks whose loading status makes the page visit every component inside them on every status message.
LAYOUTS = (gr.Tabs, gr.Tab, gr.Group, gr.Row, gr.Column, gr.Accordion)


def quiet(fn) -> bool:
    """An event that shows no progress, or a quick read outside the queue: it should have no targets."""
    return fn.show_progress == "hidden" or not fn.queue


def narrow(blocks: gr.Blocks) -> None:
    """No progress targets for the quiet events that name none themselves (see the module's docstring)."""
    for fn in blocks.fns.values():
        if fn.show_progress_on is None and quiet(fn):
            fn.show_progress_on = []


def targets(fn) -> list:
    """The components an event shows its progress on, as the page will read them."""
    return list(fn.outputs) if fn.show_progress_on is None else list(fn.show_progress_on)


def check(blocks: gr.Blocks) -> list[str]:
    """The events that break the rules above, one line each (none in a well-built app)."""
    problems = []
    for fn in blocks.fns.values():
        name, shown = fn.api_name or fn.name, targets(fn)
        if shown and quiet(fn):
            problems.append(f"{name}: shows no progress but has {len(shown)} progress targets")
        if len(shown) > MAX_TARGETS:
            problems.append(f"{name}: {len(shown)} progress targets (at most {MAX_TARGETS})")
        layouts = [type(b).__name__ for b in shown if isinstance(b, LAYOUTS)]
        problems += [f"{name}: a layout ({kind}) is a progress target" for kind in layouts]
    return problems
