"""Evolution API client: `POST {api_url}/message/sendText/{instance}` with the instance's `apikey`.

Evolution holds the HTTP answer for the typing `delay` (milliseconds) before it sends, so the client
timeout is the delay plus a margin. A send is never retried here: after a timeout the message may
well have gone out (Evolution #2192 shows repeated sends from blind retries), so every failure is
returned as a `SendResult` for the caller to record.

Errors look like `{"status": 400, "error": "Bad Request", "response": {"message": [...]}}`:
401 bad apikey, 404 unknown instance, 400 schema errors or `[{"exists": false, ...}]` when the number
is not on WhatsApp, 5xx server trouble (and 503 `LICENSE_REQUIRED` on an unactivated 2.4).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from bot.peer_http import post_json
from bot.values import as_text
from core.secrets import redact

TIMEOUT_MARGIN = 15.0  # seconds on top of the typing delay


@dataclass(frozen=True)
class SendResult:
    ok: bool
    status: int | None  # HTTP status, None when no answer came
    external_id: str | None = None  # Evolution's key.id of the sent message
    error: str | None = None


def describe_error(status: int, body: Any) -> str:
    """One line for `messages.delivery_error` (numbers from Evolution's answer are left out)."""
    detail = body.get("response", {}).get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and not isinstance(body.get("response"), dict):
        detail = body.get("message") or body.get("code")
    items = detail if isinstance(detail, list) else [detail] if detail else []
    if status == 400 and any(isinstance(i, dict) and i.get("exists") is False for i in items):
        return "400: the number is not on WhatsApp"
    texts = [str(i) for i in items if isinstance(i, str | int)]
    if status == 401:
        return "401: Evolution refused the instance api_key"
    if status == 404:
        return "404: " + ("; ".join(texts) or "the instance does not exist on Evolution")
    if status >= 500:
        return f"{status}: Evolution server error" + (f" ({'; '.join(texts)})" if texts else "")
    return f"{status}: " + ("; ".join(texts) or "request refused")


class EvolutionClient:
    def __init__(self, http: aiohttp.ClientSession, api_url: str, api_key: str) -> None:
        self.http = http
        self.api_url = api_url.rstrip("/")
        self.api_key = api_key

    async def send_text(self, instance: str, number: str, text: str, *, delay_ms: int = 0) -> SendResult:
        url = f"{self.api_url}/message/sendText/{quote(instance, safe='')}"
        body: dict[str, Any] = {"number": number, "text": text}
        if delay_ms > 0:
            body["delay"] = delay_ms
        timeout = aiohttp.ClientTimeout(total=delay_ms / 1000 + TIMEOUT_MARGIN)
        answer = await post_json(self.http, url, body, {"apikey": self.api_key}, timeout)
        if answer.timed_out:
            return SendResult(False, None, error="timeout: no answer from Evolution, delivery unknown")
        if answer.status is None:
            return SendResult(False, None, error=f"connection failed: {answer.failure}")
        status = answer.status
        if 200 <= status < 300:
            key = answer.body.get("key") if isinstance(answer.body, dict) else None
            return SendResult(True, status, external_id=as_text(key.get("id")) if isinstance(key, dict) else None)
        return SendResult(False, status, error=redact(describe_error(status, answer.body))[:500])
