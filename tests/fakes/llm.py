"""A fake OpenAI-compatible server: `POST /v1/chat/completions`, scriptable, counting tokens.

`responder(request_json)` decides each answer and returns one of:
- a `str`: the assistant message content (for structured output, a JSON string of the model);
- a `dict` with `"status"` (and optional `"body"`): an HTTP error answer, e.g. {"status": 500};
- a `dict` with `"refusal"`: a refusal message; with `"finish_reason"`: a truncated answer;
- a `float` under key `"delay"` together with `"content"`: answer after sleeping (timeouts).
The default responder answers "Hello!" to everything.
Tokens are counted as characters / 4, the same for every policy, so ratios are comparable.
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
