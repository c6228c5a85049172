"""How the OpenAI-compatible server holds a request to its limits, and stops a generation nobody waits for.

- ServerLimits: what one request may ask (`python -m backend.serve` sets them from its flags);
- KeyCheck: the API key, compared as the header's bytes in constant time;
- Line: one generation at a time per model, a bounded number waiting (a full line is the caller's 429);
- a generation ends at its next token when its request is cancelled (the client went away, mid-stream
  or while waiting for a whole reply) or when the server is told to stop (STOPPING, set on SIGTERM).
"""

import asyncio
import functools
import hmac
import threading
from dataclasses import dataclass

DISCONNECT_POLL_S = 0.25
# Set when the server is told to stop: every generation ends at its next token (backend.serve sets it).
STOPPING = threading.Event()


def openai_error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param=None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


@dataclass(frozen=True)
class ServerLimits:
    """What one request may ask of the server; `python -m backend.serve` sets them from its flags."""

    max_tokens: int = 1024  # the most tokens one reply may generate, whatever the request asks
    max_request_bytes: int = 1 << 20  # a request body's bytes (a whole book is ~1 MB of text)
    max_queue: int = 8  # requests waiting while one generates; one more is answered 429


class Stop:
    """A stopping criterion (transformers' protocol): true once its request is cancelled or the server stops."""

    def __init__(self, cancel: threading.Event):
        self.cancel = cancel

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        done = self.cancel.is_set() or STOPPING.is_set()
        return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)


class KeyCheck:
    """Every request needs `Authorization: Bearer <key>` when the server has a key.

    Compared as the header's bytes, in constant time: any header, non-ASCII included, is a 401, never a 500."""

    def __init__(self, app, expected: bytes | None):
        self.app, self.expected = app, expected

    async def __call__(self, scope, receive, send):
        if scope["type"] == "http" and self.expected:
            sent = next((value for name, value in scope.get("headers", []) if name == b"authorization"), b"")
            if not hmac.compare_digest(sent, self.expected):
                refusal = openai_error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
                await refusal(scope, receive, send)
                return
        await self.app(scope, receive, send)


class Line:
    """One model's line of requests: one generates, at most `max_queue` wait, each with its cancel event.

    The model's generate() is wrapped once so that every generation carries a Stop for the request that
    asked for it (the line lets only one generate at a time, so the current request is that one)."""

    def __init__(self, model, max_queue: int):
        self.max_queue, self.waiting = max_queue, 0
        self.turn = asyncio.Lock()
        self.current = threading.Event()
        generate = model.generate

        def stoppable(*args, **kwargs):
            from transformers import StoppingCriteriaList

            criteria = StoppingCriteriaList(kwargs.pop("stopping_criteria", None) or [])
            criteria.append(Stop(self.current))
            return generate(*args, stopping_criteria=criteria, **kwargs)

        model.generate = stoppable

    def full(self) -> bool:
        return self.waiting >= self.max_queue + (1 if not self.turn.locked() else 0)

    async def enter(self) -> threading.Event:
        self.waiting += 1
        try:
            await self.turn.acquire()
        finally:
            self.waiting -= 1
        self.current = threading.Event()
        return self.current

    def leave(self, cancel: threading.Event) -> None:
        """The request's turn ends (once, however often this is called for it); its generation stops."""
        if getattr(cancel, "left", False):
            return
        cancel.left = True  # type: ignore[attr-defined]
        cancel.set()  # whatever still generates for this request stops at its next token
        self.turn.release()


async def read_limited(request, limit: int) -> bytes | None:
    """The request's body, or None once it passes `limit` bytes (read no further: a 10 GB body costs nothing)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        return None
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            return None
        chunks.append(chunk)
    return b"".join(chunks)


async def until_disconnected(request, cancel: threading.Event, work):
    """Await `work`, setting `cancel` (which stops the generation) if the client goes away meanwhile."""
    task = asyncio.ensure_future(work)
    while not task.done():
        await asyncio.wait({task}, timeout=DISCONNECT_POLL_S)
        if not task.done() and (STOPPING.is_set() or await request.is_disconnected()):
            cancel.set()
    return task.result()


def released(response, release):
    """The streamed response, with `release` called once when it ends however it ends: done, the client gone
    (mid-stream or before its first byte), or the server stopping."""
    chunks = response.body_iterator

    async def streamed():
        try:
            async for chunk in chunks:
                if STOPPING.is_set():
                    break
                yield chunk
        finally:
            release()

    headers = {k: v for k, v in response.headers.items() if k.lower() != "content-length"}
    return _releasing_stream()(streamed(), release, status_code=response.status_code, headers=headers,
                               media_type=response.media_type)  # fmt: skip


@functools.cache
def _releasing_stream():
    from starlette.responses import StreamingResponse

    class ReleasingStream(StreamingResponse):
        def __init__(self, content, release, **kwargs):
            super().__init__(content, **kwargs)
            self.release = release

        async def __call__(self, scope, receive, send):
            try:
                await super().__call__(scope, receive, send)
            finally:
                self.release()

    return ReleasingStream
