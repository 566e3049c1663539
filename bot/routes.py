"""`POST /webhooks/evolution` and `/webhooks/evolution/{event_slug}`: Evolution API webhooks.

Order of checks, each answering before anything is written: the body is JSON naming an event and an
instance (400), the instance is configured (404), the request carries its secret (401); then
`messages.upsert` is parsed (400 if it is not a message we can read) and stored in one
transaction before the 200; `bot.drain` then links it to its lead and dialog.
Other events are authenticated, counted and answered 200.
Evolution retries 5xx and timeouts but not 4xx, so only server-side failures are 5xx.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.auth import authenticate
from bot.connections import PinnedConnections
from bot.instances import INSTANCES, InstanceCache
from bot.intake import InstanceGone, store_messages
from bot.parse import UPSERT, BadEvent, Ignored, Message, parse_envelope, parse_upsert
from bot.referral import may_carry_referral
from core.logging import get_logger
from core.metrics import WEBHOOKS
from core.web import CTX, ApiError, read_json

log = get_logger("bot.routes")
PINNED: web.AppKey[PinnedConnections] = web.AppKey("bot_pinned_connections", PinnedConnections)
SOURCE = "evolution"


def _count(result: str) -> None:
    WEBHOOKS.labels(SOURCE, result).inc()


def _bad(detail: str) -> ApiError:
    _count("bad_request")
    return ApiError(400, "not_an_evolution_event", detail)


def _unknown(name: str) -> ApiError:
    _count("unknown_instance")
    return ApiError(404, "unknown_instance", f"no WhatsApp instance named {name!r} is configured")


async def evolution_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    try:
        body = await read_json(request)
    except ApiError:
        _count("bad_request")
        raise
    try:
        envelope = parse_envelope(body, request.match_info.get("event_slug"),
                                  request.headers.get("X-Instance-Name"))
    except BadEvent as exc:
        raise _bad(str(exc)) from None
    instance = await request.app[INSTANCES].get(ctx.pool, envelope.instance)
    if instance is None:
        raise _unknown(envelope.instance)
    try:
        authenticate(request.headers, instance.webhook_secret)
    except ApiError:
        _count("unauthorized")
        raise
    if envelope.event != UPSERT:
        _count("other_event")
        return web.json_response({"status": "ignored", "event": envelope.event})
    try:
        parsed = parse_upsert(envelope.data, ads=may_carry_referral(await request.read()))
    except BadEvent as exc:
        raise _bad(str(exc)) from None
    messages = [p for p in parsed if isinstance(p, Message)]
    results: list[dict[str, Any]] = [
        {"id": p.message_id, "status": "ignored", "reason": p.reason} for p in parsed if isinstance(p, Ignored)
    ]
    if messages:
        try:
            stored_all = await store_messages(request.app[PINNED], ctx.pool, instance, messages)
        except InstanceGone:
            request.app[INSTANCES].forget(instance.name)
            raise _unknown(instance.name) from None
        for stored in stored_all:
            results.append({"id": stored.message_id, "status": stored.outcome})
    for result in results:
        _count(result["status"])
    if len(results) == 1:
        return web.json_response(results[0])
    return web.json_response({"status": "ok", "messages": results})


async def _return_pinned(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[PINNED].close()  # before the pool closes: cleanup contexts unwind in reverse


def add_routes(app: web.Application) -> None:
    """Register the Evolution webhook routes (with and without Evolution's `byEvents` slug)."""
    app[INSTANCES] = InstanceCache()
    app[PINNED] = PinnedConnections()
    app.cleanup_ctx.append(_return_pinned)
    app.router.add_post("/webhooks/evolution", evolution_webhook)
    app.router.add_post("/webhooks/evolution/{event_slug}", evolution_webhook)
