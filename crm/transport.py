"""One paced HTTP request to a CRM: wait for the limiter, send, read, count; network trouble
becomes CrmUnavailable, a limiter queue longer than `max_wait` CrmThrottled. What the status
means is each client's business."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from core.metrics import CRM_REQUESTS
from crm.errors import CrmThrottled, CrmUnavailable
from crm.ratelimit import Backlogged, RateLimiter


@dataclass(frozen=True)
class Answer:
    status: int
    body: bytes
    retry_after: float | None  # the Retry-After header in seconds, when given

    def json(self) -> Any:
        """The body as JSON, or None when it is empty or not JSON (amoCRM 429 may be plain text)."""
        try:
            return json.loads(self.body) if self.body else None
        except (UnicodeDecodeError, json.JSONDecodeError):
            return None


def host_of(url: str) -> str:
    """The host of a CRM URL: what errors and logs may name (Bitrix24 URLs carry a secret path)."""
    return urlsplit(url).netloc or "the CRM"


def _retry_after(value: str | None) -> float | None:
    try:
        return max(float(value), 0.0) if value else None
    except ValueError:
        return None


async def send(
    http: aiohttp.ClientSession,
    crm: str,
    method: str,
    url: str,
    *,
    limiter: RateLimiter,
    timeout_seconds: float,
    headers: dict[str, str] | None = None,
    params: dict[str, str] | None = None,
    json_body: Any = None,
    max_wait: float | None = None,
) -> Answer:
    try:
        await limiter.acquire(max_wait)
    except Backlogged as busy:
        raise CrmThrottled(crm, f"{crm} requests to {host_of(url)} are queued for {busy.wait:.1f}s "
                                f"(over {max_wait:.0f}s); the sync comes back later", retry_after=busy.wait) from busy
    try:
        async with http.request(
            method, url, headers=headers, params=params, json=json_body,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds), allow_redirects=False,
        ) as resp:
            body = await resp.read()
            answer = Answer(resp.status, body, _retry_after(resp.headers.get("Retry-After")))
    except (aiohttp.ClientError, TimeoutError) as exc:
        CRM_REQUESTS.labels(crm, "network_error").inc()
        raise CrmUnavailable(crm, f"{crm} at {host_of(url)} is unreachable ({type(exc).__name__})") from exc
    CRM_REQUESTS.labels(crm, str(answer.status)).inc()
    return answer
