"""A judge model: which of two answers to the same prompt is better, asked of any OpenAI-compatible endpoint.

Each prompt is judged twice, with the answers in both orders, so a judge that favours whichever
answer comes first (most do) cancels out. A judge's reply is read tolerantly: its last
"Verdict: 1 / 2 / tie" line counts, and a reply with none is "no decision", never an error.
A prompt's verdict is the mean of its readable orders (b's win 1, tie 0.5, loss 0); the win
rate is b's against a's over the prompts with a verdict, ties counting half, with a Wilson
score interval. The endpoint is checked with one tiny request before any answer is generated.
"""

from __future__ import annotations

import math
import re
from typing import Any

from backend.errors import TuneForgeError

JUDGE_SYSTEM = (
    "You are an impartial judge. Compare two answers to the user's prompt for helpfulness, correctness "
    "and clarity. Ignore the order in which they are shown and their length. First give a one-sentence "
    "reason, then end with a line that is exactly 'Verdict: 1', 'Verdict: 2' or 'Verdict: tie'."
)
JUDGE_TEMPLATE = "[Prompt]\n{prompt}\n\n[Answer 1]\n{first}\n\n[Answer 2]\n{second}"
VERDICT = re.compile(r"verdict\s*[:：]?\s*\**\s*(answer\s*)?(1|2|tie|a|b)\b", re.IGNORECASE)
NO_DECISION = "no decision"
TIMEOUT_S = 60.0
CHECK_TIMEOUT_S = 15.0  # the start waits for it: a silent host is refused in seconds, not a minute
Z95 = 1.959964


def read_verdict(reply: str) -> str | None:
    """'1', '2' or 'tie' from a judge's reply; None when it gave no readable verdict."""
    found = VERDICT.findall(reply or "")
    if not found:
        return None
    choice = found[-1][1].lower()
    return {"a": "1", "b": "2"}.get(choice, choice)


def reason_of(reply: str) -> str:
    """The judge's reply without its verdict line (what the table shows as the reason)."""
    kept = [line for line in (reply or "").strip().splitlines() if not VERDICT.search(line)]
    text = " ".join(line.strip() for line in kept if line.strip())
    return re.sub(r"^reason\s*[:：]\s*", "", text, flags=re.IGNORECASE)[:600]


def b_score(first_order: str | None, second_order: str | None) -> float | None:
    """b's score on one prompt from the two readings: (a shown first, b first). None: neither was readable."""
    scores = []
    if first_order is not None:
        scores.append({"2": 1.0, "tie": 0.5, "1": 0.0}[first_order])
    if second_order is not None:
        scores.append({"1": 1.0, "tie": 0.5, "2": 0.0}[second_order])
    return sum(scores) / len(scores) if scores else None


def verdict_name(score: float | None) -> str:
    if score is None:
        return NO_DECISION
    return "b" if score > 0.5 else "a" if score < 0.5 else "tie"


def wilson(wins: float, n: int, z: float = Z95) -> list[float] | None:
    """The Wilson score interval of a proportion wins/n (95% by default); None for n = 0."""
    if n <= 0:
        return None
    p = wins / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return [max(0.0, centre - half), min(1.0, centre + half)]


def summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """win_rate (b's against a's) and its interval over the prompts with a verdict."""
    scores = [r["score"] for r in rows if r.get("score") is not None]
    if not scores:
        return {"win_rate": None, "ci": None, "decided": 0}
    return {"win_rate": sum(scores) / len(scores), "ci": wilson(sum(scores), len(scores)), "decided": len(scores)}


class JudgeClient:
    """Chat completions of one OpenAI-compatible endpoint: {base_url, model, api_key}."""

    def __init__(self, endpoint: dict[str, Any], timeout: float = TIMEOUT_S):
        self.base_url = str(endpoint.get("base_url") or "").rstrip("/")
        self.model = str(endpoint.get("model") or "")
        self.api_key = str(endpoint.get("api_key") or "")
        if not re.match(r"^https?://[^\s/]+", self.base_url):
            example = "http://127.0.0.1:8000/v1"
            raise TuneForgeError(f"judge base_url must be an http(s) URL such as {example}, not {self.base_url!r}")
        if not self.model:
            raise TuneForgeError("judge model: name the endpoint's model (for a run served here, its run id)")
        self.timeout = timeout

    def complete(self, messages: list[dict[str, str]], max_tokens: int = 256, timeout: float | None = None) -> str:
        import httpx

        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        body = {"model": self.model, "messages": messages, "max_tokens": max_tokens, "temperature": 0}
        try:
            url, wait = f"{self.base_url}/chat/completions", timeout or self.timeout
            response = httpx.post(url, json=body, headers=headers, timeout=wait)
        except httpx.HTTPError as exc:
            raise TuneForgeError(f"judge endpoint {self.base_url} unreachable: {exc}".splitlines()[0]) from None
        if response.status_code != 200:
            why = _error_of(response)
            raise TuneForgeError(f"judge endpoint {self.base_url} answered {response.status_code}: {why}")
        try:
            return str(response.json()["choices"][0]["message"]["content"] or "")
        except (ValueError, KeyError, IndexError, TypeError):
            raise TuneForgeError(f"judge endpoint {self.base_url} did not answer as a chat completion") from None

    def check(self) -> None:
        """One tiny request: a wrong URL, model or key fails here, in one line, before any answer is generated."""
        self.complete([{"role": "user", "content": "Reply with OK."}], max_tokens=2, timeout=CHECK_TIMEOUT_S)

    def judge(self, prompt: str, first: str, second: str) -> str:
        user = JUDGE_TEMPLATE.format(prompt=prompt, first=first, second=second)
        return self.complete([{"role": "system", "content": JUDGE_SYSTEM}, {"role": "user", "content": user}])


def _error_of(response) -> str:
    try:
        error = response.json().get("error")
        message = error.get("message") if isinstance(error, dict) else error
    except ValueError:
        message = response.text
    return str(message or response.reason_phrase).strip().splitlines()[0][:200] if message else response.reason_phrase


def judged_row(client: JudgeClient, prompt: str, a: str, b: str) -> dict[str, Any]:
    """One prompt judged in both orders: its verdict, score (b's) and the judge's reasons."""
    first_reply = client.judge(prompt, a, b)
    second_reply = client.judge(prompt, b, a)
    first, second = read_verdict(first_reply), read_verdict(second_reply)
    score = b_score(first, second)
    reasons = [reason_of(first_reply), reason_of(second_reply)]
    return {
        "prompt": prompt,
        "a": a,
        "b": b,
        "verdict": verdict_name(score),
        "reason": " | ".join(r for r in reasons if r) or "(the judge gave no reason)",
        "score": score,
        "orders": [first or NO_DECISION, second or NO_DECISION],
    }
