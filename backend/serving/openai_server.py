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
- with an API key, every request needs `Authorization: Bearer <key>` (401 `invalid_api_key` otherwise).
"""

# No `from __future__ import annotations`: FastAPI reads the routes' annotations (Request) as objects, and
# those are imported inside build_app, where a string annotation could not be resolved.
import hmac
import json
import time
import uuid
from pathlib import Path
from typing import Any

ROLES = ("system", "user", "assistant", "tool", "developer")


def openai_error(status: int, message: str, kind: str = "invalid_request_error", code: str | None = None, param=None):
    from fastapi.responses import JSONResponse

    body = {"error": {"message": message, "type": kind, "param": param, "code": code}}
    return JSONResponse(body, status_code=status)


def messages_problem(messages: Any) -> str | None:
    """Why `messages` is not a chat an OpenAI server takes; None when it is."""
    if not isinstance(messages, list) or not messages:
        return "'messages' must be a non-empty list of {role, content} objects"
    for i, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES:
            return f"messages[{i}]: 'role' must be one of {', '.join(ROLES)}"
        content = message.get("content")
        if not isinstance(content, (str, list)) and not (content is None and message.get("tool_calls")):
            return f"messages[{i}]: 'content' must be text or a list of content parts"
    return None


def build_app(run_id: str, model_dir: Path, api_key: "str | None" = None):
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
    created = int(time.time())
    app = FastAPI(title=f"TuneForge run {run_id}")

    @app.middleware("http")
    async def need_api_key(request: Request, call_next):
        if api_key and not hmac.compare_digest(request.headers.get("authorization", ""), f"Bearer {api_key}"):
            return openai_error(401, "Incorrect API key provided", "invalid_request_error", "invalid_api_key")
        return await call_next(request)

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

    @app.post("/v1/chat/completions")
    async def chat_completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return openai_error(400, "the request body must be a JSON object")
        if body.get("model") != run_id:
            message = f"The model '{body.get('model')}' does not exist; this server serves '{run_id}'"
            return openai_error(404, message, code="model_not_found", param="model")
        if problem := messages_problem(body.get("messages")):
            return openai_error(400, problem, param="messages")
        return await _handled(chat, body, request)

    @app.post("/v1/completions")
    async def completions(request: Request):
        try:
            body = await request.json()
        except ValueError:
            return openai_error(400, "the request body is not valid JSON")
        if not isinstance(body, dict):
            return openai_error(400, "the request body must be a JSON object")
        if body.get("model") != run_id:
            message = f"The model '{body.get('model')}' does not exist; this server serves '{run_id}'"
            return openai_error(404, message, code="model_not_found", param="model")
        if not isinstance(body.get("prompt"), str):
            return openai_error(400, "'prompt' must be text", param="prompt")
        return await _handled(completion, body, request)

    async def _handled(handler, body: dict, request: Request):
        stops = body.get("stop") or []
        stops = [stops] if isinstance(stops, str) else [s for s in stops if isinstance(s, str) and s]
        body["model"] = pinned
        response = await handler.handle_request(body, request.headers.get("x-request-id") or str(uuid.uuid4()))
        return _as_openai(response, Reply([pinned + "@main", pinned], run_id, stops))

    return app


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
