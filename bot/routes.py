"""`POST /webhooks/evolution` and `/webhooks/evolution/{event_slug}`: Evolution API webhooks.

Order of checks, each answering before anything is written: the body fits the Evolution routes'
limit (413), is JSON naming an event and an instance (400), the instance is configured (404), the
request carries its secret, JWT or the instance's `apikey` (401, `bot.auth`); then `messages.upsert`
and `send.message` are parsed and their readable messages stored in one transaction before the
200, which lists each message's outcome (stored, duplicate, echo, ignored, invalid); a 400 only when
none can be read. `bot.drain` then links them to their lead and dialog.
Other events (`messages.set`, Evolution's history sync, among them: answering it would reply to
old chats) are authenticated, counted and answered 200.
Evolution retries 5xx and timeouts but not 4xx, so only server-side failures are 5xx.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from bot.auth import SECRET_HEADER, authenticate, credential_problem, credential_secret, header_credential
from bot.connections import PinnedConnections
from bot.instances import INSTANCES, TTL, WEBHOOK_SECRETS, Instance, InstanceCache, webhook_secrets
from bot.intake import InstanceGone, Stored, store_messages
from bot.parse import MESSAGE_EVENTS, BadEvent, Ignored, Invalid, Message, parse_envelope, parse_messages
from bot.referral import may_carry_referral
from bot.ttl_cache import TtlValue
from core.errors import BadInput, Unauthorized
from core.logging import get_logger
from core.metrics import WEBHOOKS
from core.web import CTX, ApiError, parse_json, read_body

log = get_logger("bot.routes")
PINNED: web.AppKey[PinnedConnections] = web.AppKey("bot_pinned_connections", PinnedConnections)
SOURCE = "evolution"


def _count(result: str) -> None:
    WEBHOOKS.labels(SOURCE, result).inc()


def _unknown(name: str) -> ApiError:
    _count("unknown_instance")
    return ApiError(404, "unknown_instance", f"no WhatsApp instance named {name!r} is configured")


@dataclass
class LargeBodies:
    """How many bodies above the app's limit are being read now, `evolution_large_bodies` at most
    of each kind: `signed` (a header credential of some instance) and `anonymous` (none)."""

    reading: Counter[str] = field(default_factory=Counter)


LARGE_BODIES: web.AppKey[LargeBodies] = web.AppKey("bot_large_bodies", LargeBodies)


async def _read_body(request: web.Request, limit: int) -> tuple[web.Request, bytes]:
    """The raw body, read once, up to the Evolution routes' own limit (413 above it).

    Media sent as base64 (`webhook_base64`) make bodies far larger than other webhooks', so these
    routes take up to `evolution_max_body_bytes` while the app keeps `max_body_bytes` for the rest.
    A body announced within the app's limit (every text message) is read as it is; only a larger
    or unannounced one needs the request cloned with the higher limit (aiohttp's public way).
    Which instance a request is for is in its body, so a large body is read before the request is
    authenticated. Two guards bound what that costs:
    - a secret header or bearer token must be some configured instance's before the body is read
      (401 otherwise; the instance's own check follows once the body names it);
    - at most `evolution_large_bodies` of them are read at a time, and as many without a header
      credential (Evolution's global webhook, whose token is in the body): another gets 503 at once,
      which Evolution retries (10 attempts over ~20 minutes by default, evolution-api 2.3.7
      `webhook.controller.ts` `retryWebhookRequest`; 4xx it does not), while text messages go on.
      Strangers can fill only the anonymous slots, so per-instance webhooks keep theirs.
    """
    settings = request.app[CTX].settings
    size = request.content_length
    if size is not None and size > limit:  # refused before a byte of it is read
        raise _too_large(limit)
    if size is not None and size <= settings.max_body_bytes:
        return request, await _read_within(request, limit)
    signed = header_credential(request.headers)
    if signed:
        grace = settings.jwt_grace_seconds
        matched = await request.app[WEBHOOK_SECRETS].find(
            request.app[CTX].pool, lambda secrets: credential_secret(request.headers, secrets, grace))
        if matched is None:
            _count("unauthorized")
            raise Unauthorized(credential_problem(request.headers),
                               code="invalid_secret" if SECRET_HEADER in request.headers else "invalid_token")
    reading = request.app[LARGE_BODIES].reading
    kind = "signed" if signed else "anonymous"
    if reading[kind] >= settings.evolution_large_bodies:
        _count("busy")
        raise ApiError(503, "busy", f"{reading[kind]} large webhook bodies ({kind}) are being read; try again "
                       "later (QUALIBOT_EVOLUTION_LARGE_BODIES)")
    reading[kind] += 1
    try:
        return request, await _read_within(request.clone(client_max_size=limit), limit)
    finally:
        reading[kind] -= 1


async def _read_within(request: web.Request, limit: int) -> bytes:
    try:
        return await read_body(request)  # within the body deadline, like every route
    except web.HTTPRequestEntityTooLarge:
        raise _too_large(limit) from None


def _too_large(limit: int) -> ApiError:
    _count("too_large")
    return ApiError(413, "body_too_large", f"the body exceeds the Evolution webhooks' limit of {limit} bytes "
                    "(QUALIBOT_EVOLUTION_MAX_BODY_BYTES)")


def _slug(request: web.Request) -> str | None:
    # a byEvents URL configured with a trailing slash posts to `…/evolution//messages-upsert`
    return request.match_info.get("event_slug", "").strip("/") or None


async def evolution_webhook(request: web.Request) -> web.Response:
    settings = request.app[CTX].settings
    request, raw = await _read_body(request, settings.evolution_max_body_bytes)
    try:
        body = parse_json(raw)
        envelope = parse_envelope(body, _slug(request), request.headers.get("X-Instance-Name"))
    except BadInput:  # BadJson, BadEvent: the middleware answers 400 with the error's code
        _count("bad_request")
        raise
    pool = request.app[CTX].pool
    instance = await request.app[INSTANCES].get(pool, envelope.instance)
    if instance is None:
        raise _unknown(envelope.instance)
    try:
        authenticate(request.headers, instance.webhook_secret, body_apikey=body.get("apikey"),
                     api_key=instance.api_key, grace_seconds=settings.jwt_grace_seconds)
    except Unauthorized:
        _count("unauthorized")
        raise
    if envelope.event not in MESSAGE_EVENTS:
        _count("other_event")
        return web.json_response({"status": "ignored", "event": envelope.event})
    try:
        parsed = parse_messages(envelope.data, ads=may_carry_referral(raw), event=envelope.event)
    except BadEvent:
        _count("bad_request")
        raise
    results = await _store(request, instance, parsed)
    for result in results:
        _count(result["status"])
    if len(results) == 1:
        return web.json_response(results[0])
    return web.json_response({"status": "ok", "messages": results})


async def _store(request: web.Request, instance: Instance, parsed: list[Message | Ignored | Invalid],
                 ) -> list[dict[str, Any]]:
    """Store the readable messages; one outcome per message, in the webhook's order."""
    messages = [p for p in parsed if isinstance(p, Message)]
    stored: Iterator[Stored] = iter(())
    if messages:
        try:
            stored = iter(await store_messages(request.app[PINNED], request.app[CTX].pool, instance, messages))
        except InstanceGone:
            request.app[INSTANCES].forget(instance.name)
            raise _unknown(instance.name) from None
    results: list[dict[str, Any]] = []
    for p in parsed:
        if isinstance(p, Message):
            done = next(stored)
            results.append({"id": done.message_id, "status": done.outcome})
        elif isinstance(p, Ignored):
            results.append({"id": p.message_id, "status": "ignored", "reason": p.reason})
        else:
            results.append({"id": p.message_id, "status": "invalid", "reason": p.reason})
    return results


async def _return_pinned(app: web.Application) -> AsyncIterator[None]:
    yield
    await app[PINNED].close()  # before the pool closes: cleanup contexts unwind in reverse


def add_routes(app: web.Application) -> None:
    """Register the Evolution webhook routes (with and without Evolution's `byEvents` slug)."""
    app[INSTANCES] = InstanceCache()
    app[LARGE_BODIES] = LargeBodies()
    app[WEBHOOK_SECRETS] = TtlValue(webhook_secrets, TTL)
    app[PINNED] = PinnedConnections()
    app.cleanup_ctx.append(_return_pinned)
    app.router.add_post("/webhooks/evolution", evolution_webhook)
    app.router.add_post("/webhooks/evolution/{event_slug:/*[^/]*}", evolution_webhook)
