"""The Graph API client for `POST {META_GRAPH_URL}/{META_API_VERSION}/{dataset}/events`.

It never raises for anything Meta (or the network) does: every call returns a `GraphAnswer` whose
`kind` is success, transient or permanent (see `capi.errors`). Only programming errors escape.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp

from capi.errors import Kind, MetaError, classify_error, classify_status, transport_error
from capi.payload import request_body
from core.metrics import META_LATENCY
from core.secrets import redact, redact_value
from core.settings import Settings

_TEXT_KEPT = 500  # characters of an unreadable answer kept for the audit log


@dataclass(frozen=True)
class GraphAnswer:
    kind: Kind
    sent: int
    http_status: int | None
    response: dict[str, Any]  # stored in capi_events_log.response (Meta's body, or what went wrong)
    error: MetaError | None = None
    events_received: int | None = None

    @property
    def fbtrace_id(self) -> str | None:
        trace = self.response.get("fbtrace_id")
        if trace is None and isinstance(self.response.get("error"), dict):
            trace = self.response["error"].get("fbtrace_id")
        return str(trace) if trace is not None else None


class GraphClient:
    """Posts batches of events with the process's shared `aiohttp.ClientSession`."""

    def __init__(self, http: aiohttp.ClientSession, settings: Settings) -> None:
        self.http = http
        self.base = f"{settings.meta_graph_url}/{settings.meta_api_version}"
        self.partner_agent = settings.partner_agent or None
        self.timeout = aiohttp.ClientTimeout(total=settings.meta_timeout_seconds)

    def events_url(self, dataset: str) -> str:
        return f"{self.base}/{quote(dataset, safe='')}/events"

    async def send(
        self, dataset: str, access_token: str, events_json: Sequence[str], test_event_code: str | None
    ) -> GraphAnswer:
        body = request_body(
            events_json, access_token=access_token, partner_agent=self.partner_agent,
            test_event_code=test_event_code,
        )
        started = time.monotonic()
        answer = await self._post(self.events_url(dataset), body, len(events_json), access_token)
        META_LATENCY.labels(answer.kind).observe(time.monotonic() - started)
        return answer

    async def _post(self, url: str, body: bytes, sent: int, token: str) -> GraphAnswer:
        try:
            async with self.http.post(
                url, data=body, headers={"Content-Type": "application/json"}, timeout=self.timeout
            ) as resp:
                status = resp.status
                raw = await resp.read()
        except TimeoutError:
            return _no_answer(sent, f"no answer from Meta within {self.timeout.total:g} s", "timeout")
        except (aiohttp.ClientError, OSError) as exc:
            return _no_answer(sent, f"connection to Meta failed: {type(exc).__name__}: {exc}", "connection")
        return interpret(status, raw, sent, token)


def _no_answer(sent: int, what: str, transport: str) -> GraphAnswer:
    error = transport_error(what)
    return GraphAnswer(error.kind, sent, None, {"transport_error": transport, "detail": what}, error)


def interpret(status: int, raw: bytes, sent: int, token: str = "") -> GraphAnswer:
    """Classify one HTTP answer to a batch of `sent` events."""
    try:
        body: Any = redact_value(json.loads(raw), (token,))  # Meta may echo a token: stored and logged clean
    except (UnicodeDecodeError, ValueError):
        text = redact(raw.decode("utf-8", "replace"), (token,))[:_TEXT_KEPT]
        error = classify_status(status, "the answer is not JSON")
        return GraphAnswer(error.kind, sent, status, {"http_status": status, "text": text}, error)
    if not isinstance(body, dict):
        error = classify_status(status, "the answer is not a JSON object")
        return GraphAnswer(error.kind, sent, status, {"http_status": status, "body": body}, error)
    if 200 <= status < 300:
        received = body.get("events_received")
        if isinstance(received, int) and not isinstance(received, bool):
            return GraphAnswer("success", sent, status, body, None, received)
        error = classify_status(status, "the answer has no events_received")
        return GraphAnswer(error.kind, sent, status, body, error)
    error = classify_error(status, body)
    return GraphAnswer(error.kind, sent, status, body, error)
