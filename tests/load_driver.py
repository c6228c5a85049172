"""Status pollers and a chatter against a running app, for the load test and bench/load_clients.py."""

from __future__ import annotations

import json
import statistics
import threading
import time
import urllib.request

from gradio_client import Client

STATUS_CLIENTS = 5  # plain HTTP pollers; the chat goes through gradio_client
STATUS_INTERVAL_S = 0.2  # each client asks five times a second, as a busy dashboard might
MAX_REQUESTS = 400  # per client: the load is bounded whatever the machine's speed


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(share * len(ordered)))]


def status_over_http(url: str, run_id: str, session: str) -> dict:
    """train_status as a dashboard would poll it: one plain HTTP POST (status reads skip the queue).

    gradio_client would add its own per-call cost (about 70 ms here), which is not the app's.
    The session hash is what a browser tab and gradio_client send with every request: without
    one, Gradio builds a fresh session, which renders every component's config of our app (about
    90 ms of CPU per request on the 2-core dev machine, against about 5 ms for the read itself).
    """
    request = urllib.request.Request(
        f"{url}gradio_api/run/train_status",
        data=json.dumps({"data": [run_id], "session_hash": session}).encode(),
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())["data"][0]


def drive_clients(url: str, run_id: str, seconds: float, chatting: bool = True) -> dict:
    """Run the status pollers and (unless chatting is False) the chatter against url for `seconds`.

    Returns the latencies in ms, and the failures."""
    stop = time.monotonic() + seconds
    status_ms: list[float] = []
    chat_ms: list[float] = []
    failures: list[str] = []
    lock = threading.Lock()

    def poll(session: str) -> None:
        for _ in range(MAX_REQUESTS):
            if time.monotonic() >= stop:
                return
            began = time.perf_counter()
            try:
                status = status_over_http(url, run_id, session)
                assert status["run_id"] == run_id
            except Exception as exc:  # noqa: BLE001 - a failed request is a result here, not a crash
                with lock:
                    failures.append(f"status: {exc}")
                continue
            with lock:
                status_ms.append(1000 * (time.perf_counter() - began))
            time.sleep(STATUS_INTERVAL_S)

    def chat(client: Client) -> None:
        for i in range(MAX_REQUESTS):
            if time.monotonic() >= stop:
                return
            began = time.perf_counter()
            try:
                reply = client.predict("base", f"Say a number bigger than {i}.", [], api_name="/chat")
                assert isinstance(reply, str)
            except Exception as exc:  # noqa: BLE001
                with lock:
                    failures.append(f"chat: {exc}")
                continue
            with lock:
                chat_ms.append(1000 * (time.perf_counter() - began))

    threads = [threading.Thread(target=poll, args=(f"poller-{n}",)) for n in range(STATUS_CLIENTS)]
    if chatting:
        threads.append(threading.Thread(target=chat, args=(Client(url, verbose=False),)))
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(seconds + 120)  # a chat reply under way may finish after the deadline
    return {
        "seconds": seconds,
        "status_requests": len(status_ms),
        "status_p50_ms": round(statistics.median(status_ms), 1) if status_ms else None,
        "status_p95_ms": round(percentile(status_ms, 0.95), 1) if status_ms else None,
        "status_max_ms": round(max(status_ms), 1) if status_ms else None,
        "chat_replies": len(chat_ms),
        "chat_p50_ms": round(statistics.median(chat_ms), 1) if chat_ms else None,
        "failures": failures,
    }
