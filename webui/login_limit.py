"""Failed logins are rate-limited, so a public link's password cannot be guessed by brute force.

An ASGI middleware in front of Gradio's POST /login (the browser form and gradio_client both
use it). A client gets `PER_CLIENT` failures a minute, and the whole app `OVERALL`: behind a
share tunnel every visitor arrives from the tunnel's local address, so a per-address limit
alone would let a forged X-Forwarded-For buy fresh attempts. While a limit is reached every
login, right or wrong, gets 429 with Retry-After.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import defaultdict, deque

PER_CLIENT, OVERALL, WINDOW_S = 5, 30, 60.0
FAILED = (400, 401)


class LoginLimiter:
    def __init__(self, app, per_client=PER_CLIENT, overall=OVERALL, window_s=WINDOW_S, clock=time.monotonic):
        self.app, self.per_client, self.overall, self.window_s, self.clock = app, per_client, overall, window_s, clock
        self._lock = threading.Lock()
        self._failures: dict[str, deque[float]] = defaultdict(deque)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["method"] != "POST" or not scope["path"].rstrip("/").endswith("/login"):
            return await self.app(scope, receive, send)
        client = _client_key(scope)
        wait = self._wait_s(client)
        if wait:
            return await _too_many(send, wait)
        status = {}

        async def capture(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        await self.app(scope, receive, capture)
        if status.get("code") in FAILED:
            with self._lock:
                self._failures[client].append(self.clock())

    def _wait_s(self, client: str) -> int:
        """Seconds until this client may try again; 0 when it may now."""
        now = self.clock()
        with self._lock:
            for failures in self._failures.values():
                while failures and failures[0] <= now - self.window_s:
                    failures.popleft()
            mine = self._failures[client]
            everyone = sorted(t for failures in self._failures.values() for t in failures)
            limits = []
            if len(mine) >= self.per_client:
                limits.append(mine[-self.per_client] + self.window_s - now)
            if len(everyone) >= self.overall:
                limits.append(everyone[-self.overall] + self.window_s - now)
        return math.ceil(max(limits)) if limits else 0


def _client_key(scope) -> str:
    host = (scope.get("client") or ("unknown", 0))[0]
    forwarded = dict(scope.get("headers") or []).get(b"x-forwarded-for", b"").decode("latin-1").split(",")[0].strip()
    return f"{host}>{forwarded}" if forwarded else host


async def _too_many(send, wait: int) -> None:
    body = json.dumps({"detail": f"Too many failed logins; try again in {wait} s."}).encode()
    headers = [(b"content-type", b"application/json"), (b"retry-after", str(wait).encode())]
    await send({"type": "http.response.start", "status": 429, "headers": headers})
    await send({"type": "http.response.body", "body": body})
