"""A streamed reply reaches the page a few times a second, not once a token.

Every message a handler yields is processed by the whole page: Gradio's bookkeeping of each event walks every
component (about 0.2 s of script a message in headless Chromium on the 2-core dev machine, measured with the
DevTools profiler on the studio's page before webui/progress_targets.py cut it). A small model on a CPU writes
a token in less than that, so a reply sent token by token keeps a core busy drawing text faster than anyone
reads it, and takes that core from the model writing it. Four updates a second still reads as live typing.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator

PACE_S = 0.25


def paced(texts: Iterable[str], every_s: float = PACE_S) -> Iterator[str]:
    """The texts, at most one every `every_s` seconds: the first at once, the newest when its time comes,
    and always the last."""
    sent_at, waiting = None, None
    for text in texts:
        now = time.monotonic()
        if sent_at is None or now - sent_at >= every_s:
            sent_at, waiting = now, None
            yield text
        else:
            waiting = text
    if waiting is not None:
        yield waiting
