"""What an idle app and an idle page cost: next to nothing, where Gradio left each spinning.

Both were measured with nothing happening (bench/idle_page.py, docs/benchmarks.md):

- The app's queue looks for work every millisecond when it has none (Gradio 6's `sleep_when_free` off
  Windows): 8% of a core with no page open. `quiet_queue` gives it the pace Gradio itself uses on
  Windows, 50 ms (and 100 ms for its progress updates). A queued event (a chat, an evaluation, a
  Start) starts at most that much later; status reads and timers skip the queue (webui/lanes.py).
- The page's status trackers count a pending event's elapsed time in a loop of animation frames, and
  one such loop outlives the page's loading screen: a page with nothing pending asks the browser for
  60 frames a second for as long as it is open (7% of a core for a page holding one textbox).
  `FRAME_SCRIPT` gives the trackers a frame ten times a second instead: the counter they update shows
  tenths of a second, and every other caller keeps its frames. The trackers take requestAnimationFrame
  from the window as their bundle loads, before Gradio adds the app's `head` to the page, so the script
  goes into the page's HTML itself, first in its head (`FrameScript`, a middleware).

And every event that reaches the server costs the page script, whatever it sends back: on each status change
Gradio 6.31 updates the status of every component that ever had one, and finds each by walking the page's
tree (479 components here). That was about 0.2 s a message on a 2-core Zen 3 before the progress targets
were narrowed (webui/progress_targets.py) and Gradio's run history turned off (launch.py); the timers that
follow a live job still tick every 2 s, and the check for finished runs, on every tab, every 4 s.
"""

from __future__ import annotations

import sys

QUEUE_POLL_S = 0.05
PROGRESS_POLL_S = 0.1
TRACKER_FRAME_MS = 100

# A tracker is recognised by its bundle's name in the caller's stack; cancelAnimationFrame still cancels
# what it was handed, a frame or a timeout.
FRAME_SCRIPT = f"""<script>
(() => {{
  const frame = window.requestAnimationFrame.bind(window), cancel = window.cancelAnimationFrame.bind(window);
  const timeouts = new Map();
  let next = 2 ** 30;
  window.requestAnimationFrame = (callback) => {{
    if (!(new Error().stack || "").includes("statustracker")) return frame(callback);
    const id = next++;
    timeouts.set(id, setTimeout(() => {{ timeouts.delete(id); callback(performance.now()); }}, {TRACKER_FRAME_MS}));
    return id;
  }};
  window.cancelAnimationFrame = (id) => {{
    if (!timeouts.has(id)) return cancel(id);
    clearTimeout(timeouts.get(id));
    timeouts.delete(id);
  }};
}})();
</script>"""


def quiet_queue(blocks) -> None:
    """Slow the idle polling of the queue that `blocks.queue()` made; a Gradio without those knobs is left as it is."""
    queue = getattr(blocks, "_queue", None)
    knobs = ("sleep_when_free", "progress_update_sleep_when_free")
    if queue is None or not all(hasattr(queue, name) for name in knobs):
        print("gradio's queue has no idle pace to set; it polls at its own", file=sys.stderr)
        return
    queue.sleep_when_free = QUEUE_POLL_S
    queue.progress_update_sleep_when_free = PROGRESS_POLL_S


# Gradio's API and the files it hands out (`/gradio_api/file=...`, a user's own .html among them) are never
# rewritten: only the pages it draws itself (the app, its login).
API_PREFIX = "/gradio_api/"


class FrameScript:
    """ASGI middleware: a page of Gradio's goes out with FRAME_SCRIPT first in its head; everything else as it came."""

    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "GET" or API_PREFIX in scope.get("path", ""):
            return await self.app(scope, receive, send)
        held: dict = {}  # the start of an HTML response, until its body is whole
        chunks: list[bytes] = []

        async def rewrite(message):
            if message["type"] == "http.response.start":
                headers = dict(message.get("headers") or [])
                if headers.get(b"content-type", b"").startswith(b"text/html") and b"content-encoding" not in headers:
                    held["start"] = message
                    return None
                return await send(message)
            if "start" not in held or message["type"] != "http.response.body":
                return await send(message)
            chunks.append(message.get("body", b""))
            if message.get("more_body"):
                return None
            body = with_frame_script(b"".join(chunks))
            start = held["start"]
            headers = [(k, v) for k, v in start.get("headers", []) if k.lower() != b"content-length"]
            await send({**start, "headers": [*headers, (b"content-length", str(len(body)).encode())]})
            return await send({"type": "http.response.body", "body": body})

        await self.app(scope, receive, rewrite)


def with_frame_script(html: bytes) -> bytes:
    """The page with FRAME_SCRIPT just inside its <head>; a page without one as it was."""
    start = html.lower().find(b"<head")
    end = html.find(b">", start) if start >= 0 else -1
    if end < 0:
        return html
    return html[: end + 1] + FRAME_SCRIPT.encode() + html[end + 1 :]
