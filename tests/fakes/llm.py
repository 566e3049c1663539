"""A fake OpenAI-compatible server: `POST /v1/chat/completions`, scriptable, counting tokens.

`responder(request_json)` decides each answer and returns one of:
- a `str`: the assistant message content (for structured output, a JSON string of the model);
- a `dict` with `"status"` (and optional `"body"`): an HTTP error answer, e.g. {"status": 500};
- a `dict` with `"refusal"`: a refusal message; with `"finish_reason"`: a truncated answer;
- a `float` under key `"delay"` together with `"content"`: answer after sleeping (timeouts).
The default responder answers "Hello!" to everything.
Tokens are counted as characters / 4, the same for every policy, so ratios are comparable.

Kinds of server (`refuses`, `wrap`), each answering as the real one does (bodies cited at `REFUSALS`):
- `refuses` holds what the server rejects before answering: "json_schema" (OpenAI on a model
  without Structured Outputs), "response_format" (any response_format at all), "llamacpp_schema"
  (an old llama.cpp server: 500 on json_schema), "max_tokens" and "temperature" (OpenAI's
  reasoning models); `refused` counts those answers;
- `wrap` dresses the content the way loose servers do: "fenced" (```json … ```), "prose" (a
  sentence before and after the object), "think" (a `<think>` block first, as reasoning models
  served by llama.cpp or vLLM without a reasoning parser write). These three shapes are a guess:
  written from how such answers are commonly described, not captured from a server's output or
  read from its source.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

Responder = Callable[[dict[str, Any]], Any]

# (status, error object) per refusal; the SDK puts the `error` object in APIStatusError.body
REFUSALS: dict[str, tuple[int, dict[str, Any]]] = {
    # langchain-ai/langchain#31490 (OpenAI, gpt-4o via Azure)
    "json_schema": (400, {"message": "Invalid parameter: 'response_format' of type 'json_schema' is not supported "
                                     "with this model. Learn more about supported models at the Structured Outputs "
                                     "guide: https://platform.openai.com/docs/guides/structured-outputs",
                          "type": "invalid_request_error", "param": None, "code": None}),
    # mrwadams/stride-gpt#19 (OpenAI-compatible Azure and Google hosts)
    "response_format": (400, {"message": "Invalid parameter: 'response_format' of type 'json_object' is not "
                                         "supported with this model.", "type": "invalid_request_error",
                              "param": "response_format", "code": None}),
    # ikawrakow/ik_llama.cpp#778 (llama.cpp server before json_schema support)
    "llamacpp_schema": (500, {"code": 500, "message": 'response_format type must be one of "text" or '
                                                      '"json_object", but got: json_schema', "type": "server_error"}),
    # griptape-ai/ComfyUI-Griptape#312 (gpt-5, o-series)
    "max_tokens": (400, {"message": "Unsupported parameter: 'max_tokens' is not supported with this model. Use "
                                    "'max_completion_tokens' instead.", "type": "invalid_request_error",
                         "param": "max_tokens", "code": "unsupported_parameter"}),
    # OpenHands/OpenHands#4131 (o1-mini)
    "temperature": (400, {"message": "Unsupported value: 'temperature' does not support 0 with this model. Only the "
                                     "default (1) value is supported.", "type": "invalid_request_error",
                          "param": "temperature", "code": "unsupported_value"}),
}


def refusal_of(kinds: set[str], body: dict[str, Any]) -> str | None:
    """Which of `kinds` this request runs into, if any."""
    response_format = body.get("response_format")
    kind = response_format.get("type") if isinstance(response_format, dict) else None
    if "response_format" in kinds and response_format is not None:
        return "response_format"
    if kind == "json_schema":
        for name in ("json_schema", "llamacpp_schema"):
            if name in kinds:
                return name
    if "max_tokens" in kinds and "max_tokens" in body:
        return "max_tokens"
    if "temperature" in kinds and body.get("temperature", 1) != 1:
        return "temperature"
    return None


def wrapped(content: str, wrap: str | None) -> str:
    if wrap == "fenced":
        return f"```json\n{content}\n```"
    if wrap == "prose":
        return f"Here is my assessment of the dialog:\n{content}\nLet me know if you need anything else."
    if wrap == "think":
        return f"<think>The client wrote {{\"maybe\": true}}; let me decide.</think>\n{content}"
    return content


def _count_tokens(text: str) -> int:
    return max(1, len(text) // 4)


def prompt_text(request: dict[str, Any]) -> str:
    """All message contents of a chat request, joined (what the model 'reads')."""
    parts = []
    for m in request.get("messages", []):
        content = m.get("content")
        if isinstance(content, list):
            content = " ".join(str(c.get("text", "")) for c in content if isinstance(c, dict))
        parts.append(str(content or ""))
    return "\n".join(parts)


class FakeLLM(FakeServer):
    def __init__(self, responder: Responder | None = None) -> None:
        self.responder: Responder = responder or (lambda _req: "Hello!")
        self.calls = 0
        self.prompt_tokens = 0
        self.completion_tokens = 0
        self.refuses: set[str] = set()
        self.refused = 0
        self.wrap: str | None = None
        super().__init__()

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/v1/chat/completions", self._completions)

    async def _completions(self, request: web.Request) -> web.Response:
        body = await request.json()
        self.requests.append({"headers": dict(request.headers), "json": body})
        self.calls += 1
        refused = refusal_of(self.refuses, body)
        if refused is not None:
            self.refused += 1
            status, error = REFUSALS[refused]
            return web.json_response({"error": error}, status=status)
        answer = self.responder(body)
        if asyncio.iscoroutine(answer):
            answer = await answer
        finish_reason = "stop"
        refusal = None
        if isinstance(answer, dict):
            if "delay" in answer:
                await asyncio.sleep(float(answer["delay"]))
            if "status" in answer:
                return web.json_response(
                    answer.get("body", {"error": {"message": "fake failure", "type": "server_error"}}),
                    status=int(answer["status"]),
                )
            refusal = answer.get("refusal")
            finish_reason = answer.get("finish_reason", "stop")
            content = answer.get("content")
        else:
            content = answer
        if content is not None and not isinstance(content, str):
            content = json.dumps(content)
        if content is not None:
            content = wrapped(content, self.wrap)
        prompt_tokens = _count_tokens(prompt_text(body))
        completion_tokens = _count_tokens(content or refusal or "")
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        return web.json_response(
            {
                "id": f"chatcmpl-fake-{self.calls}",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": content, "refusal": refusal},
                        "finish_reason": finish_reason,
                        "logprobs": None,
                    }
                ],
                "usage": {
                    "prompt_tokens": prompt_tokens,
                    "completion_tokens": completion_tokens,
                    "total_tokens": prompt_tokens + completion_tokens,
                },
            }
        )
