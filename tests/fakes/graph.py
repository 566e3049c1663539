"""A fake Meta Graph API for `POST /{version}/{dataset}/events` (reference meta-capi.md §7).

It accepts what real clients send: a JSON body, or a form (urlencoded or multipart) whose `data`
is a JSON array of event objects or of JSON-encoded event strings (the official SDK's sync path);
the token in the body, the query string or `Authorization: Bearer`. It refuses a whole request
the way Meta does, with the error shapes of `tests/capi/fixtures/meta/`: bad token (401, 190),
unknown dataset (100/33), more than 1000 events, an event older than 7 days (2804003), missing
fields, unhashed customer data, a missing or rejected click id (2804087), Purchase without value
(2804009), and a business_messaging event whose name is outside Meta's 14 (2804066, the fixture
error-2804066-invalid-event-type.json; reference meta-capi.md §0, §2, §4: Meta's FAQ list, and
live reports of Lead / CompleteRegistration / Schedule refused). `business_messaging_names = False`
plays the integrators who report those names accepted.

Modes: `latency` (seconds added to every answer), and `script`, a queue of behaviours for the
next requests: "throttle" (17), "transient" (2), "503", "timeout" (sleeps `timeout_sleep`),
"close" (drops the connection), "malformed" (200 with HTML), "short_ack" (one event fewer
acknowledged than sent). `requests` records every request; `delivered` counts accepted event ids.

Run standalone (for benchmarks, in its own process): `python -m tests.fakes.graph --port N`;
`POST /__fake__/config` sets attributes, `GET /__fake__/stats` reads counters,
`POST /__fake__/reset` forgets requests and deliveries.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import re
import secrets
import time
from collections import Counter, deque
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from aiohttp import web

from capi.errors import BUSINESS_MESSAGING_EVENT_NAMES
from tests.fakes.server import FakeServer

FIXTURES = Path(__file__).resolve().parent.parent / "capi" / "fixtures" / "meta"
MAX_EVENTS = 1000
MAX_AGE_SECONDS = 7 * 24 * 3600
ACTION_SOURCES = {"email", "website", "app", "phone_call", "chat", "physical_store", "system_generated",
                  "business_messaging", "other"}
MESSAGING_CHANNELS = {"whatsapp", "messenger", "instagram"}
# Meta's FAQ list (reference meta-capi.md §2), written once, in capi.errors
BUSINESS_MESSAGING_NAMES = frozenset(BUSINESS_MESSAGING_EVENT_NAMES)
HASHED_FIELDS = ("em", "ph", "fn", "ln", "ct", "st", "zp", "country", "ge", "db")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_VERSION = re.compile(r"^v\d+\.\d+$")


def _fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


class Rejection(Exception):  # a Graph error answer, raised while checking a request
    def __init__(self, status: int, body: dict[str, Any]) -> None:
        super().__init__(body["error"].get("message"))
        self.status = status
        self.body = body


def _error(fixture: str, status: int = 400, **replace: Any) -> Rejection:
    body = copy.deepcopy(_fixture(fixture))
    body["error"].update(replace)
    body["error"]["fbtrace_id"] = "A" + secrets.token_hex(6)
    return Rejection(status, body)


def _invalid(message: str, user_msg: str | None = None, subcode: int | None = None) -> Rejection:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": 100,
                             "is_transient": False, "fbtrace_id": "A" + secrets.token_hex(6)}
    if subcode is not None:
        error["error_subcode"] = subcode
    if user_msg:
        error["error_user_title"] = "Invalid parameter"
        error["error_user_msg"] = user_msg
    return Rejection(400, {"error": error})


class FakeGraph(FakeServer):
    def __init__(
        self, *, tokens: Iterable[str] | None = None, datasets: Iterable[str] | None = None,
        record_events: bool = True,
    ) -> None:
        self.tokens = set(tokens) if tokens is not None else None  # None: any non-empty token
        self.datasets = set(datasets) if datasets is not None else None  # None: any dataset
        self.business_messaging_names = True  # refuse names outside Meta's list, as Meta does
        self.invalid_clids: set[str] = set()
        self.deprecated_versions: set[str] = set()
        self.latency = 0.0
        self.timeout_sleep = 5.0
        self.script: deque[str] = deque()
        self.record_events = record_events
        self.delivered: Counter[str] = Counter()
        self.delivered_total = 0
        super().__init__()

    # --- what tests read -------------------------------------------------------------------
    def delivered_ids(self) -> set[str]:
        return set(self.delivered)

    def duplicates(self) -> dict[str, int]:
        return {k: v for k, v in self.delivered.items() if v > 1}

    def events_sent(self) -> list[dict[str, Any]]:
        return [e for r in self.requests for e in r.get("events", [])]

    def reset(self) -> None:
        self.requests.clear()
        self.delivered.clear()
        self.delivered_total = 0
        self.script.clear()

    # --- the server ------------------------------------------------------------------------
    def setup(self, app: web.Application) -> None:
        app.router.add_post("/__fake__/config", self._config)
        app.router.add_post("/__fake__/reset", self._reset)
        app.router.add_get("/__fake__/stats", self._stats)
        app.router.add_post("/{version}/{dataset}/events", self._events)

    async def _config(self, request: web.Request) -> web.Response:
        for key, value in (await request.json()).items():
            setattr(self, key, set(value) if key in ("invalid_clids", "deprecated_versions") else value)
        return web.json_response({"ok": True})

    async def _reset(self, _: web.Request) -> web.Response:
        self.reset()
        return web.json_response({"ok": True})

    async def _stats(self, _: web.Request) -> web.Response:
        return web.json_response({
            "requests": len(self.requests), "delivered_total": self.delivered_total,
            "unique": len(self.delivered), "duplicates": len(self.duplicates()),
        })

    async def _events(self, request: web.Request) -> web.StreamResponse:
        started = time.monotonic()
        record: dict[str, Any] = {"dataset": request.match_info["dataset"],
                                  "version": request.match_info["version"], "query": dict(request.query)}
        self.requests.append(record)
        behaviour = self.script.popleft() if self.script else None
        try:
            events, params = await self._parse(request, record)
            if behaviour:
                special = await self._behave(behaviour, request)
                if special is not None:
                    record["status"] = special.status
                    return special
            self._check_request(record, params, events)
            for event in events:
                self._check_event(event)
        except Rejection as rejection:
            record["status"] = rejection.status
            record["error"] = rejection.body["error"]
            await self._sleep_rest(started)
            return web.json_response(rejection.body, status=rejection.status)
        received = len(events) - 1 if behaviour == "short_ack" else len(events)
        for event in events[:received]:
            self.delivered[str(event.get("event_id"))] += 1
        self.delivered_total += received
        record["status"] = 200
        await self._sleep_rest(started)
        return web.json_response({"events_received": received, "messages": [],
                                  "fbtrace_id": "A" + secrets.token_hex(8)})

    async def _sleep_rest(self, started: float) -> None:
        rest = self.latency - (time.monotonic() - started)
        if rest > 0:
            await asyncio.sleep(rest)

    async def _behave(self, behaviour: str, request: web.Request) -> web.StreamResponse | None:
        if behaviour == "throttle":
            raise _error("error-17-throttled.json")
        if behaviour == "transient":
            raise _error("error-2-transient.json", status=500)
        if behaviour == "503":
            return web.Response(status=503, text="Service Unavailable")
        if behaviour == "timeout":
            await asyncio.sleep(self.timeout_sleep)
            return web.Response(status=504, text="late")
        if behaviour == "malformed":
            return web.Response(status=200, text="<html>oops</html>", content_type="text/html")
        if behaviour == "close":
            assert request.transport is not None
            request.transport.abort()
            return web.Response(status=200)
        if behaviour == "short_ack":
            return None
        raise ValueError(f"unknown fake behaviour {behaviour!r}")

    async def _parse(self, request: web.Request, record: dict[str, Any]) -> tuple[list[Any], dict[str, Any]]:
        params: dict[str, Any]
        if request.content_type == "application/json":
            try:
                params = json.loads(await request.read())
            except ValueError as exc:
                raise _invalid("(#100) The request body is not valid JSON") from exc
            record["body"] = "json"
        else:
            params = dict(await request.post())
            record["body"] = "form"
        if not isinstance(params, dict):
            raise _invalid("(#100) The request body must be an object")
        token, via = params.get("access_token"), "body"
        if not token and request.query.get("access_token"):
            token, via = request.query["access_token"], "query"
        auth = request.headers.get("Authorization", "")
        if not token and auth.startswith("Bearer "):
            token, via = auth.removeprefix("Bearer ").strip(), "bearer"
        record.update(token=token, token_via=via, test_event_code=params.get("test_event_code"),
                      partner_agent=params.get("partner_agent"))
        data = params.get("data")
        if isinstance(data, str):
            try:
                data = json.loads(data)
            except ValueError as exc:
                raise _invalid("(#100) param data must be a JSON array") from exc
        if data is None:
            data = []
        if not isinstance(data, list):
            raise _invalid("(#100) param data must be an array")
        events = [json.loads(e) if isinstance(e, str) else e for e in data]
        if self.record_events:
            record["events"] = events
        record["count"] = len(events)
        return events, params

    def _check_request(self, record: dict[str, Any], params: dict[str, Any], events: list[Any]) -> None:
        token = record.get("token")
        if not token or (self.tokens is not None and token not in self.tokens):
            raise _error("error-190-invalid-token.json", status=401)
        version = record["version"]
        if not _VERSION.match(version) or version in self.deprecated_versions:
            raise Rejection(400, {"error": {
                "message": "(#2635) You are calling a deprecated version of the Ads API.",
                "type": "OAuthException", "code": 2635, "fbtrace_id": "A" + secrets.token_hex(6)}})
        dataset = record["dataset"]
        if self.datasets is not None and dataset not in self.datasets:
            message = _fixture("error-33-unknown-dataset.json")["error"]["message"].replace("1234567890", dataset)
            raise _error("error-33-unknown-dataset.json", message=message)
        if not events:
            raise _invalid("(#100) The parameter data is required")
        if len(events) > MAX_EVENTS:
            raise _invalid(f"(#100) data: at most {MAX_EVENTS} events per request, got {len(events)}")

    def _check_event(self, event: Any) -> None:
        if not isinstance(event, dict):
            raise _invalid("(#100) every element of data must be an event object")
        for name in ("event_name", "event_time", "action_source", "user_data"):
            if event.get(name) in (None, "", {}):
                raise _invalid(f"(#100) The parameter {name} is required")
        event_time = event["event_time"]
        if isinstance(event_time, str) and event_time.isdigit():
            event_time = int(event_time)
        if not isinstance(event_time, int) or isinstance(event_time, bool):
            raise _invalid("(#100) event_time must be a Unix timestamp in seconds")
        now = time.time()
        if event_time < now - MAX_AGE_SECONDS:
            raise _error("error-2804003-too-old.json")
        if event_time > now + 60:
            raise _invalid("(#100) event_time is in the future", "The event_time is too far in the future.")
        if event["action_source"] not in ACTION_SOURCES:
            raise _invalid(f"(#100) action_source {event['action_source']!r} is not supported")
        user_data = event["user_data"]
        if not isinstance(user_data, dict):
            raise _invalid("(#100) user_data must be an object")
        for name in HASHED_FIELDS:
            if name in user_data:
                values = user_data[name] if isinstance(user_data[name], list) else [user_data[name]]
                if not all(isinstance(v, str) and _SHA256.match(v) for v in values):
                    raise _invalid("(#100) Invalid parameter", f"user_data.{name} must be hashed with SHA-256")
        if event["action_source"] == "business_messaging":
            self._check_business_messaging(event, user_data)
        custom = event.get("custom_data") or {}
        if event["event_name"] == "Purchase" and not (custom.get("value") is not None and custom.get("currency")):
            raise _invalid("Invalid parameter", "Missing Value for Purchase Event", 2804009)

    def _check_business_messaging(self, event: dict[str, Any], user_data: dict[str, Any]) -> None:
        channel = event.get("messaging_channel")
        if channel not in MESSAGING_CHANNELS:
            raise _invalid("(#100) messaging_channel is required for business_messaging events")
        if self.business_messaging_names and event["event_name"] not in BUSINESS_MESSAGING_NAMES:
            raise _error("error-2804066-invalid-event-type.json")
        if channel == "whatsapp":
            clid = user_data.get("ctwa_clid")
            if not clid or clid in self.invalid_clids:
                raise _error("error-2804087-invalid-ctwa-clid.json")


async def _serve(port: int) -> None:
    fake = FakeGraph(record_events=False)
    await fake.start(port)
    print(fake.url, flush=True)
    await asyncio.Event().wait()


def main() -> None:
    parser = argparse.ArgumentParser(description="Run the fake Graph API until killed")
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    try:
        asyncio.run(_serve(args.port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
