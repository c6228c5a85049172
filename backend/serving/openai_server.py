"""A completed run behind an OpenAI-compatible API: `/v1/models`, `/v1/chat/completions` and `/v1/completions`,
streamed or not.

The generation, streaming (server-sent events), sampling (temperature, top_p, max_tokens, stop) and the
response format are transformers' own server (`transformers serve`): its ChatCompletionHandler, pinned
to the run's merged model, which carries the chat template the run was trained with, and its
CompletionHandler for raw-text `/v1/completions`. This module adds
what a studio's server needs around it, which `transformers serve` leaves to the caller:

- `/v1/models` lists the run (by its run id), not every model in the Hugging Face cache;
- the `model` of a request must be the run id (any other is OpenAI's 404 `model_not_found`);
- messages are checked before generation (a malformed list is a 400, not a traceback);
- errors come back in OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`, and the server
  keeps serving;
- with an API key, every request needs `Authorization: Bearer <key>` (401 `invalid_api_key` otherwise),
  compared as bytes in constant time, so any header (non-ASCII included) is a 401, never a 500;
- limits (ServerLimits): a body over `max_request_bytes` is a 413; a request is checked field by field
  (a malformed `content`, `max_tokens`, `stop` is a 400 naming it); a prompt that does not leave room
  for one token in the model's context is a 400 `context_length_exceeded`; `max_tokens` is capped at
  the context left after the prompt and at `max_tokens` (`--max-tokens`);
- one generation at a time, with at most `max_queue` requests waiting; one more is a 429;
- a generation stops when its client disconnects, and when the server is told to stop (SIGTERM), so
  neither a gone client nor shutdown waits for a million tokens.

The limits, the line, the stops and the key check are backend.serving.server_limits.
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) as objects, and
# those are imported inside build_app, where a string annotation could not be resolved.
import functools
import json
import math
import time
import uuid
from pathlib import Path
from typing import Any

from backend.serving.server_limits import (
    KeyCheck,
    Line,
    ServerLimits,
    openai_error,
    read_limited,
    released,
    until_disconnected,
)

ROLES = ("system", "user", "assistant", "tool", "developer")
MAX_MESSAGES = 2_000
MAX_STOPS = 4  # as OpenAI's API


def messages_problem(messages: Any) -> str | None:
    """Why `messages` is not a chat an OpenAI server takes; None when it is."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content} objects"
    if len(messages) > MAX_MESSAGES:
        return f"'messages' holds {len(messages)} messages (at most {MAX_MESSAGES})"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}]: 'role' must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if not isinstance(content, (str, list)) and not (content is None and message.get("tool_calls")):
            return f"messages[{i}]: 'content' must be text or a list of content parts"
        if isinstance(content, list) and not all(_text_part(part) for part in content):
            return f"messages[{i}]: each content part must be {{'type': 'text', 'text': '...'}}"
    return None


def _text_part(part: Any) -> bool:
    return isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)


def settings_problem(body: dict) -> tuple[str, str] | None:
    """(the parameter, why) when a sampling setting is malformed; None when they all are fine."""
    for name in ("max_tokens", "max_completion_tokens"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            return name, f"'{name}' must be a whole number of at least 1"
    for name, low, high in (("temperature", 0.0, 2.0), ("top_p", 0.0, 1.0)):
        value = body.get(name)
        number = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        if value is not None and not (number and low <= value <= high):
            return name, f"'{name}' must be a number from {low} to {high}"
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop
    if stop is not None and not (isinstance(stops, list) and len(stops) <= MAX_STOPS and
                                 all(isinstance(s, str) for s in stops)):  # fmt: skip
        return "stop", f"'stop' must be a string or a list of at most {MAX_STOPS} strings"
    if "stream" in body and not isinstance(body["stream"], bool):
        return "stream", "'stream' must be true or false"
    return None


def flat_messages(messages: list[dict]) -> list[dict]:
    """The chat as {role, content: text}, for counting its tokens with the chat template."""
    flat = []
    for message in messages:
        content = message.get("content")
        if isinstance(content, list):
            content = "".join(part["text"] for part in content)
        flat.append({"role": message["role"], "content": content or ""})
    return flat


def build_app(run_id: str, model_dir: Path, api_key: "str | None" = None, limits: ServerLimits = ServerLimits()):
    """The FastAPI app serving `model_dir` (the run's merged model) under the name `run_id`."""
    from fastapi import FastAPI, HTTPException, Request
    from fastapi.exceptions import RequestValidationError
    from transformers.cli.serving.chat_completion import ChatCompletionHandler
    from transformers.cli.serving.completion import CompletionHandler
    from transformers.cli.serving.model_manager import ModelManager
    from transformers.cli.serving.utils import GenerationState

    pinned = str(model_dir)
    manager = ModelManager(dtype="auto", force_model=pinned)  # loads the model now: the first reply is quick
    state = GenerationState()
    chat = ChatCompletionHandler(model_manager=manager, generation_state=state)
    completion = CompletionHandler(model_manager=manager, generation_state=state)
    _, model, processor = chat._resolve_model({"model": pinned})  # the pinned model: loaded once, never unloaded
    tokenizer = getattr(processor, "tokenizer", processor)
    context = context_length(model, tokenizer)
    line = Line(model, limits.max_queue)
    created = int(time.time())
    app = FastAPI(title=f"TuneForge run {run_id}")

    # A plain ASGI middleware, not @app.middleware("http"): that one runs the route in a task of its own and
    # wraps `receive`, so a client's disconnect never reaches the route and a gone client would keep a core busy.
    app.add_middleware(KeyCheck, expected=f"Bearer {api_key}".encode() if api_key else None)

    @app.exception_handler(Exception)
    async def server_error(_request: Request, exc: Exception):
        return openai_error(500, f"the server failed: {type(exc).__name__}", "server_error")

    @app.exception_handler(HTTPException)
    async def http_error(_request: Request, exc: HTTPException):
        return openai_error(exc.status_code, str(exc.detail))

    @app.exception_handler(RequestValidationError)
    async def validation_error(_request: Request, exc: RequestValidationError):
        error = exc.errors()[0]
        return openai_error(400, f"invalid request: {'.'.join(map(str, error.get('loc', ())))}: {error.get('msg')}")

    @app.get("/v1/models")
    def list_models():
        return {
            "object": "list",
            "data": [{"id": run_id, "object": "model", "created": created, "owned_by": "tuneforge"}],
        }

    async def _body(request: Request) -> Any:
        """The request's JSON object, or the OpenAI-shaped error that refuses it (413, 400, 404)."""
        raw = await read_limited(request, limits.max_request_bytes)
        if raw is None:
            message = f"the request body is over {limits.max_request_bytes:,} bytes"
            return openai_error(413, message, code="request_too_large")
        try:
            body = json.loads(raw)
        except ValueError:
            return openai_error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return openai_error(400, "the request body must be a JSON object")
        if body.get("model") != run_id:
            message = f"The model '{str(body.get('model'))[:200]}' does not exist; this server serves '{run_id}'"
            return openai_error(404, message, code="model_not_found", param="model")
        if problem := settings_problem(body):
            return openai_error(400, problem[1], param=problem[0])
        return body

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        body = await _body(request)
        if not isinstance(body, dict):
            return body
        if problem := messages_problem(body.get("messages")):
            return openai_error(400, problem, param="messages")
        return await _handled(chat, body, request, prompt_tokens(tokenizer, body["messages"]), "messages")

    @app.post("/v1/completions")
    async def completions(request: Request):
        body = await _body(request)
        if not isinstance(body, dict):
            return body
        if not isinstance(body.get("prompt"), str):
            return openai_error(400, "'prompt' must be text", param="prompt")
        return await _handled(completion, body, request, len(tokenizer(body["prompt"])["input_ids"]), "prompt")

    async def _handled(handler, body: dict, request: Request, prompt: int, param: str):
        """Cap the reply to the context left and --max-tokens, wait in the line, and stop with the client."""
        if prompt >= context:
            message = f"the prompt is {prompt} tokens; this model's context is {context} (leave room for the reply)"
            return openai_error(400, message, code="context_length_exceeded", param=param)
        asked = body.pop("max_completion_tokens", None) or body.get("max_tokens") or limits.max_tokens
        body["max_tokens"] = min(asked, context - prompt, limits.max_tokens)
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [s for s in stops if s]
        body["model"] = pinned
        if line.full():
            message = f"the server is busy ({line.max_queue} requests already wait); try again shortly"
            return openai_error(429, message, "rate_limit_error", "rate_limit_exceeded")
        cancel = await line.enter()
        release = functools.partial(line.leave, cancel)  # Line.leave is once per request, however often called
        request_id = request.headers.get("x-request-id") or str(uuid.uuid4())
        try:
            response = await until_disconnected(request, cancel, handler.handle_request(body, request_id))
            response = _as_openai(response, Reply([pinned + "@main", pinned], run_id, stops))
        except BaseException:
            release()
            raise
        if not hasattr(response, "body_iterator"):
            release()
            return response
        return released(response, release)

    return app


def prompt_tokens(tokenizer, messages: list[dict]) -> int:
    ids = tokenizer.apply_chat_template(flat_messages(messages), add_generation_prompt=True, tokenize=True)
    ids = ids["input_ids"] if hasattr(ids, "keys") else ids
    return len(ids[0]) if ids and isinstance(ids[0], list) else len(ids)


def context_length(model, tokenizer) -> int:
    """The most tokens the model attends to: its config's positions, else the tokenizer's limit."""
    for name in ("max_position_embeddings", "n_positions", "max_sequence_length", "seq_length"):
        value = getattr(model.config, name, None) or getattr(getattr(model.config, "text_config", None), name, None)
        if isinstance(value, int) and value > 0:
            return value
    limit = getattr(tokenizer, "model_max_length", None)
    return limit if isinstance(limit, int) and 0 < limit < 10**7 else 2048


class Reply:
    """What transformers' reply needs to read as OpenAI's: the run's name as the model, and no stop sequence.

    transformers names the model by its folder (and revision), and its generation ends *after* a stop
    string, which it keeps; OpenAI's reply ends before it. A stream's text is held back while it could
    still be the start of a stop string, so no part of one is ever sent."""

    def __init__(self, folder_names: list[str], run_id: str, stops: list[str]):
        self.folder_names, self.run_id, self.stops = folder_names, run_id, stops
        self.pending, self.stopped = "", False

    def named(self, event: dict) -> dict:
        if event.get("model") in self.folder_names:
            event["model"] = self.run_id
        return event

    def whole(self, text: str) -> str:
        cut = min((i for i in (text.find(stop) for stop in self.stops) if i >= 0), default=len(text))
        return text[:cut]

    def piece(self, text: str, last: bool) -> str:
        """The part of a streamed piece that may be sent now."""
        if self.stopped:
            return ""
        self.pending += text
        kept = self.whole(self.pending)
        if len(kept) < len(self.pending):
            self.stopped, self.pending = True, ""
            return kept
        hold = 0 if last else max((n for stop in self.stops for n in range(1, len(stop)) if kept.endswith(stop[:n])),
                                   default=0)  # fmt: skip
        self.pending = kept[len(kept) - hold :] if hold else ""
        return kept[: len(kept) - hold]


def _as_openai(response, reply: Reply):
    from fastapi.responses import JSONResponse

    if isinstance(response, JSONResponse):
        content = reply.named(json.loads(response.body))
        for choice in content.get("choices") or []:
            message = choice.get("message") or {}
            if isinstance(message.get("content"), str):
                message["content"] = reply.whole(message["content"])
            if isinstance(choice.get("text"), str):
                choice["text"] = reply.whole(choice["text"])
        return JSONResponse(content=content, status_code=response.status_code)
    chunks = response.body_iterator

    async def streamed():
        async for chunk in chunks:
            text = chunk if isinstance(chunk, str) else chunk.decode("utf-8")
            yield "".join(_edited_event(event, reply) for event in text.split("\n\n") if event.strip())

    response.body_iterator = streamed()
    return response


def _edited_event(event: str, reply: Reply) -> str:
    if not event.startswith("data: ") or event.strip() == "data: [DONE]":
        return event + "\n\n"
    data = reply.named(json.loads(event[len("data: ") :]))
    for choice in data.get("choices") or []:
        if "text" in choice:  # /v1/completions
            choice["text"] = reply.piece(choice.get("text") or "", last=bool(choice.get("finish_reason")))
            if not choice["text"] and not choice.get("finish_reason"):
                return ""
            continue
        delta = choice.get("delta") or {}
        if isinstance(delta.get("content"), str) or choice.get("finish_reason"):
            delta["content"] = reply.piece(delta.get("content") or "", last=bool(choice.get("finish_reason")))
            if not delta["content"] and not choice.get("finish_reason"):
                return ""  # held back, or past a stop string
            choice["delta"] = delta
    return f"data: {json.dumps(data)}\n\n"
