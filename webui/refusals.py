"""How a refused action shows on the page: the backend's TuneForgeError becomes one line, never a traceback.

The backend raises one error type whose message is written for the person (STYLE.md: errors are values
at the boundary), so a handler does not catch it: it is decorated with where its refusal shows.

- `on_refusal`: in the outputs, laid out per handler; usually the tab's message, `**Cannot export:** <reason>`;
- `on_refusal_warn`: a toast, where the tab has no message line (an upload, picking a run);
- `on_refusal_raise`: Gradio's error popup, for handlers whose outputs are data (a download, a table),
  and for the API endpoints, whose callers get it as an exception;
- `stream_with_refusal`: the last text of a streamed reply, `⚠️ <reason>`, so a chat shows it in its bubble.

A layout says what each output shows on refusal, in order: LINE is the message in markdown, REASON the
bare reason (for a plain text box), KEEP leaves that output as it is, a function is called for what to show
(an empty state in the page's language), and anything else is shown as given.

On the page, the action and the backend's English reason are shown in the page's language where the
catalogues know them (webui.i18n.say_line); the API endpoints' errors stay English.
"""

from __future__ import annotations

import copy
import functools
import traceback
from collections.abc import Callable, Iterable, Iterator

import gradio as gr

from backend.errors import TuneForgeError
from webui.i18n import say_line

LINE, REASON, KEEP = object(), object(), object()

# What a refused action is called: a fixed text, or one made from the handler's arguments (self first).
Action = str | Callable[..., str] | None


def refusal_text(action: str, exc: Exception) -> str:
    return f"**{say_line(action)}:** {say_line(str(exc))}"


def on_refusal(action: Action, *layout):
    """Show a refusal in the outputs as laid out; without a layout, the message line is the only output.

    `action` names what was refused ("Cannot export"); None where the layout has no LINE.
    """
    return _on_refusal(action, layout or (LINE,))


def on_refusal_warn(*layout):
    """Show a refusal as a toast, the outputs as laid out."""

    def show(exc: TuneForgeError) -> None:
        gr.Warning(say_line(str(exc)))

    return _on_refusal(None, layout, show)


def on_refusal_raise(action: str | None = None, *, page: bool = True):
    """Raise a refusal as gr.Error, which Gradio shows as one line (and gradio_client raises).

    page=False for the API endpoints: their callers get the backend's English, whatever their headers say."""
    words = say_line if page else str

    def show(exc: TuneForgeError) -> None:
        # A refusal is the caller's mistake, not ours: no traceback in the app's log for it.
        text = f"{words(action)}: {words(str(exc))}" if action else words(str(exc))
        raise gr.Error(text, print_exception=False) from None

    return _on_refusal(None, (), show)


def stream_with_refusal(texts: Iterable[str], failed: str | None = None) -> Iterator[str]:
    """The streamed texts, then `⚠️ <reason>` if the stream was refused.

    `texts` must be a generator (ChatEngine.stream is one): a refusal raised by the call that made it,
    before this loop starts, would escape.

    With `failed` ("chat failed"), an unexpected error ends the stream the same way, naming its type;
    its traceback goes to the app's log, for us.
    """
    try:
        yield from texts
    except TuneForgeError as exc:
        yield f"⚠️ {say_line(str(exc))}"
    except Exception as exc:  # noqa: BLE001 - the person sees one line; the traceback goes to the app log
        if failed is None:
            raise
        traceback.print_exc()
        yield f"⚠️ {failed}: {type(exc).__name__}: {exc}"


def _on_refusal(action: Action, layout: tuple, show: Callable[[TuneForgeError], None] | None = None):
    """The handler, with a refusal shown by `show` (which may raise instead) and then in the outputs as laid out."""

    def wrap(handler):
        # functools.wraps keeps the name (Gradio names the event's endpoint after it) and the signature
        # (Gradio passes gr.Progress to the handlers that ask for it).
        @functools.wraps(handler)
        def run(*args, **kwargs):
            try:
                return handler(*args, **kwargs)
            except TuneForgeError as exc:
                if show:
                    show(exc)
                title = action(*args) if callable(action) else action
                shown = [_shown(item, title, exc) for item in layout]
                return shown[0] if len(shown) == 1 else tuple(shown)

        return run

    return wrap


def _shown(item, action: str | None, exc: TuneForgeError):
    if item is LINE:
        return refusal_text(action, exc)
    if item is REASON:
        return str(exc)
    if item is KEEP:
        return gr.update()
    if callable(item):
        return item()
    return copy.copy(item)  # Gradio pops `value` out of an update dict as it sends it: each refusal gets its own
