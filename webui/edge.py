"""The API edge: every call into the app, an API endpoint or a page's event, is checked before anything runs.

Gradio runs every call (HTTP, websocket, gradio_client, the page's own events) through one method of the
app, `Blocks.process_api`; guard() wraps it on this app, so no endpoint, today's or one added later,
is left out:

1. the payload's shape (backend.access.limits.shape): text length, items, depth, bytes, finite numbers;
2. Gradio's own preprocessing (a file payload without its metadata, a chat history that is not a list,
   a value not among a dropdown's choices) refuses in one line, audited, instead of a traceback;
3. the typed API endpoints' arguments (typed(): backend.access.limits.ENDPOINT_TYPES).

A refusal is one line (gr.Error, without a traceback in the app's log) and one audit line. The training
options' own bounds are TrainConfig's (backend/config.py), checked by the backend for the UI, API and CLI.
"""

from __future__ import annotations

import functools
import inspect
from typing import Any

import gradio as gr
from gradio.exceptions import ComponentProcessingError
from pydantic import ValidationError

from backend.access.audit import clipped
from backend.access.gate import Gate
from backend.access.limits import check_arguments, shape
from backend.errors import TuneForgeError
from webui.context import caller


def refuse(gate: Gate, action: str, reason: str, username: str | None = None) -> None:
    """Record the refusal and raise it as the one line the caller sees."""
    user = username if username is not None else caller()
    gate.audit.record(user or "local", action, f"refused: {reason}")
    raise gr.Error(clipped(reason, 600), print_exception=False)


def typed(gate: Gate, endpoint: str):
    """Check an API endpoint's arguments against backend.access.limits.ENDPOINT_TYPES before it runs."""

    def wrap(fn):
        signature = inspect.signature(fn)

        @functools.wraps(fn)
        def run(*args, **kwargs):
            try:
                bound = signature.bind(*args, **kwargs)
            except TypeError as exc:
                refuse(gate, endpoint, f"{endpoint}: {exc}")
            try:
                check_arguments(endpoint, bound.arguments)
            except TuneForgeError as exc:
                refuse(gate, endpoint, str(exc))
            return fn(*args, **kwargs)

        return run

    return wrap


def guard(blocks: gr.Blocks, gate: Gate) -> None:
    """Wrap this app's process_api so every call's payload is checked first and Gradio's input errors are lines."""
    process_api = blocks.process_api

    async def checked(block_fn, inputs, *args, **kwargs):
        fn = blocks.fns[block_fn] if isinstance(block_fn, int) else block_fn
        name = fn.api_name or fn.name or "event"
        request = kwargs.get("request", args[1] if len(args) > 1 else None)
        user = getattr(request, "username", None)
        if fn.fn is None:  # a script that runs in the page (webui/open_tab_timers.py): nothing here to call
            refuse(gate, name, f"{name}: runs in the page only, not through the API", user)
        try:
            shape(inputs, name)
        except TuneForgeError as exc:
            refuse(gate, name, str(exc), user)
        try:
            return await process_api(block_fn, inputs, *args, **kwargs)
        except (ComponentProcessingError, ValidationError) as exc:
            refuse(gate, name, f"{name}: {_input_error(exc)}", user)
        except gr.Error as exc:
            # Gradio's own refusals (a value not among a dropdown's choices) print a traceback by default and
            # are not audited; ours (webui/refusals.py) are audited by the gate and print none.
            if exc.print_exception:
                exc.print_exception = False
                gate.audit.record(user or "local", name, f"refused: {exc}")
            raise

    blocks.process_api = checked  # type: ignore[method-assign]


def _input_error(exc: Exception) -> str:
    """Gradio's or pydantic's complaint about an input, as one line that does not quote the input."""
    if isinstance(exc, ValidationError):
        error = exc.errors(include_url=False, include_input=False)[0]
        place = ".".join(str(p) for p in error.get("loc", ()))
        return f"{place + ': ' if place else ''}{error.get('msg', 'invalid input')}"
    cause: Any = exc.__cause__
    if isinstance(cause, ValidationError):
        return _input_error(cause)
    first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return clipped(first.split(" with input components")[0], 200) + (f" ({clipped(str(cause), 120)})" if cause else "")
