"""Who writes the rows: any OpenAI-compatible endpoint, or a local model through the chat engine.

A generator spec is {"base_url", "model", "api_key"} (Ollama, vLLM, a hosted API, `python -m backend.serve`),
{"run": run_id} (a completed run of the workspace), or "base" (the embedded model; "base:<model>" another).
The API key is never written into a recipe file or a log: the job gets it through its environment
(RECIPE_KEY_ENV), and every message here names the endpoint by its URL only.

A failed call (timeout, refused connection, an error status, a reply that is not a chat completion) raises
CallFailed; the recipe retries it a bounded number of times and counts it, and the recipe goes on.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

from backend.errors import TuneForgeError

RECIPE_KEY_ENV = "TUNEFORGE_RECIPE_API_KEY"
URL = re.compile(r"^https?://[^\s/]+(/\S*)?$")


class CallFailed(Exception):
    """One generator call failed; the message names why (never the key)."""


class Generator(Protocol):
    def complete(self, prompt: str, temperature: float, max_tokens: int) -> str: ...


def generator_spec(spec: Any) -> dict | str:
    """The spec checked and stripped of its key: what a recipe file records."""
    if isinstance(spec, str):
        text = spec.strip()
        if text == "base" or text.startswith("base:"):
            return text
        raise TuneForgeError(f"generator {spec!r}: use 'base', {{'run': run_id}} or {{'base_url', 'model'}}")
    if not isinstance(spec, dict):
        raise TuneForgeError("generator: use 'base', {'run': run_id} or {'base_url', 'model', 'api_key'}")
    if "run" in spec:
        if set(spec) - {"run"} or not isinstance(spec["run"], str) or not spec["run"].strip():
            raise TuneForgeError("generator {'run': run_id}: give only the id of a completed run")
        return {"run": spec["run"].strip()}
    unknown = set(spec) - {"base_url", "model", "api_key"}
    if unknown:
        raise TuneForgeError(f"generator: unknown key(s) {', '.join(sorted(unknown))} (use base_url, model, api_key)")
    url, model = spec.get("base_url"), spec.get("model")
    if not isinstance(url, str) or not URL.match(url.strip()):
        raise TuneForgeError(f"generator base_url {url!r}: give an http(s) URL such as http://localhost:11434/v1")
    if not isinstance(model, str) or not model.strip() or len(model) > 200:
        raise TuneForgeError("generator model: give the endpoint's model name (for Ollama, e.g. 'llama3.1')")
    if spec.get("api_key") is not None and not isinstance(spec["api_key"], str):
        raise TuneForgeError("generator api_key: must be text")
    return {"base_url": url.strip().rstrip("/"), "model": model.strip()}


def describe_generator(spec: dict | str) -> str:
    if isinstance(spec, str):
        return spec
    return f"run {spec['run']}" if "run" in spec else f"{spec['model']} at {spec['base_url']}"


class Endpoint:
    """An OpenAI-compatible /chat/completions, called with httpx (one request, no client-side retries)."""

    def __init__(self, base_url: str, model: str, api_key: str = "", timeout_s: float = 60.0):
        self.url, self.model, self.timeout_s = base_url.rstrip("/") + "/chat/completions", model, timeout_s
        self.headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}

    def complete(self, prompt: str, temperature: float, max_tokens: int) -> str:
        import httpx

        body = {
            "model": self.model,
            "messages": [{"role": "user", "content": prompt}],
            "temperature": temperature,
            "max_tokens": max_tokens,
        }
        try:
            response = httpx.post(self.url, json=body, headers=self.headers, timeout=self.timeout_s)
        except httpx.TimeoutException:
            raise CallFailed(f"no reply from {self.url} within {self.timeout_s:g} s") from None
        except httpx.HTTPError as exc:
            raise CallFailed(f"cannot reach {self.url} ({type(exc).__name__})") from None
        if response.status_code >= 400:
            raise CallFailed(f"{self.url} answered HTTP {response.status_code}: {_error_text(response)}")
        try:
            content = response.json()["choices"][0]["message"]["content"]
        except (ValueError, KeyError, IndexError, TypeError):
            raise CallFailed(f"{self.url} sent a reply that is not a chat completion") from None
        if not isinstance(content, str):
            raise CallFailed(f"{self.url} sent a reply without text")
        return content


def _error_text(response) -> str:
    try:
        error = response.json().get("error")
        return str(error.get("message") if isinstance(error, dict) else error)[:200]
    except (ValueError, AttributeError):
        return response.text[:200].replace("\n", " ")


class LocalModel:
    """A completed run or a base model, through the chat engine (loaded once, in the recipe's process)."""

    def __init__(self, workspace, target: str):
        from backend.runs.job_manager import JobManager
        from backend.serving.chat import ChatEngine

        self.target, self.engine = target, ChatEngine(JobManager(workspace))

    def complete(self, prompt: str, temperature: float, max_tokens: int) -> str:
        try:
            return self.engine.reply(self.target, prompt, [], temperature=temperature, max_new_tokens=max_tokens)
        except TuneForgeError:
            raise  # no such run, not completed: every call would fail alike, so the recipe stops
        except Exception as exc:  # noqa: BLE001 - one generation failing is one failed call
            raise CallFailed(f"the local model failed: {type(exc).__name__}: {str(exc)[:200]}") from None


def open_generator(spec: dict | str, api_key: str, workspace, timeout_s: float) -> Generator:
    if isinstance(spec, str):
        return LocalModel(workspace, spec)
    if "run" in spec:
        return LocalModel(workspace, spec["run"])
    return Endpoint(spec["base_url"], spec["model"], api_key, timeout_s)
