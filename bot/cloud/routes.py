"""`GET` and `POST /webhooks/whatsapp-cloud`: Meta's own WhatsApp Cloud API webhook.

GET is Meta's verification: `hub.mode=subscribe` and a `hub.verify_token` some number was
configured with → the `hub.challenge` as text/plain; anything else → 403.

POST, each check answering before anything is written: the body fits the app's limit (413); its
`X-Hub-Signature-256` is the HMAC of the raw bytes with a configured app secret (401, checked
before parsing); it is JSON (400) shaped like Meta's webhook (400, `bot.cloud.parse`); every
`phone_number_id` it names is configured (404) and belongs to the app that signed it (401). Then
its messages are stored through the Evolution path's own intake (`bot.intake.store_messages`: one
insert, settled by the message id, the `wamid`, so Meta's redeliveries change nothing), the
statuses of our replies recorded on them, and automatic events and errors stored
(`bot.cloud.notices`); the 200 lists each message's outcome. The intake drain links lead and
dialog as for Evolution, and the dialog's reply goes out through Graph (`bot.transport`).
Meta retries anything but a 200 for days, so only server-side failures are 5xx. Each change is
committed as it is stored: when a later one fails, the earlier ones stay, the answer is a 5xx, and
Meta's retry finds them (`duplicate`) and stores the rest once. A coexistence echo
(`smb_message_echoes`) is stored as the operator's message, as Evolution's `fromMe`.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from aiohttp import web

from bot.cloud import notices
from bot.cloud.errors import describe
from bot.cloud.numbers import CloudNumber, NumberCache, verify_token_known
from bot.cloud.parse import Change, parse_body
from bot.cloud.signature import HEADER, matching_secret
from bot.instances import Instance
from bot.intake import InstanceGone, Stored, store_messages
from bot.parse import Ignored, Message
from bot.routes import PINNED
from core.errors import BadInput
from core.metrics import WEBHOOKS
from core.web import CTX, ApiError, parse_json, read_body
from qualification.dialogs import record_peer_status

SOURCE = "whatsapp_cloud"
NUMBERS: web.AppKey[NumberCache] = web.AppKey("bot_cloud_numbers", NumberCache)
PATH = "/webhooks/whatsapp-cloud"


def _count(result: str, n: int = 1) -> None:
    WEBHOOKS.labels(SOURCE, result).inc(n)


async def verify(request: web.Request) -> web.Response:
    q = request.query
    token, challenge = q.get("hub.verify_token", ""), q.get("hub.challenge", "")
    if (q.get("hub.mode") != "subscribe" or not token or not challenge or len(challenge) > 1000
            or not await verify_token_known(request.app[CTX].pool, token)):
        _count("verify_refused")
        return web.Response(status=403, text="verification refused", content_type="text/plain")
    _count("verified")
    return web.Response(text=challenge, content_type="text/plain")


async def webhook(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    raw = await read_body(request)  # the app's size limit (413) and body deadline (408)
    cache = request.app[NUMBERS]
    header = request.headers.get(HEADER)
    secret = await cache.app_secrets.find(ctx.pool, lambda secrets: matching_secret(raw, header, secrets))
    if secret is None:
        _count("unauthorized")
        raise ApiError(401, "bad_signature", f"{HEADER} is missing or is not the HMAC-SHA256 of the body "
                       "with a configured app secret")
    try:
        changes, other_fields = parse_body(parse_json(raw))
    except BadInput:
        _count("bad_request")
        raise
    numbers = await _numbers(cache, request, changes, secret)
    results: list[dict[str, Any]] = [{"status": "ignored", "field": f} for f in other_fields]
    _count("other_field", len(other_fields))
    for change, number in zip(changes, numbers, strict=True):
        results.extend(await _store(request, change, number))
    return web.json_response({"status": "ok", "results": results})


async def _numbers(cache: NumberCache, request: web.Request, changes: list[Change], secret: str) -> list[CloudNumber]:
    """Each change's number, all checked before anything is written."""
    found: list[CloudNumber] = []
    for change in changes:
        number = await cache.get(request.app[CTX].pool, change.phone_number_id)
        if number is None:
            _count("unknown_number")
            raise ApiError(404, "unknown_phone_number_id",
                           f"no WhatsApp Cloud number {change.phone_number_id!r} is configured")
        if number.app_secret != secret:  # two values of ours: nothing to learn from the time
            _count("unauthorized")
            raise ApiError(401, "bad_signature", f"number {change.phone_number_id!r} belongs to another app: "
                           "the body is signed with a different app secret")
        found.append(number)
    return found


async def _store(request: web.Request, change: Change, number: CloudNumber) -> list[dict[str, Any]]:
    """One change's outcomes, in order: its messages, the statuses of our replies, its notices."""
    pool = request.app[CTX].pool
    results = await _store_messages(request, change, number)
    for s in change.statuses:
        error = "; ".join(describe(e) for e in s.errors) or "failed (Meta gave no reason)"
        changed = await record_peer_status(pool, number.instance_name, s.wamid, s.status, s.at,
                                           error if s.status == "failed" else None)
        results.append({"id": s.wamid, "status": f"status_{s.status}", "recorded": changed})
        _count("status")
    for n in change.notices:
        new = await notices.store_notice(pool, number.instance_name, n)
        results.append({"id": n.wamid, "status": n.kind if new else "duplicate", "event": n.event_name})
        _count(n.kind if new else "duplicate")
    return results


async def _store_messages(request: web.Request, change: Change, number: CloudNumber) -> list[dict[str, Any]]:
    messages = [m for m in change.messages if isinstance(m, Message)]
    outcomes: Iterator[Stored] = iter(())
    if messages:
        # the intake knows a number by its instance row (the drain reads its default direction there);
        # the Evolution-only fields play no part in storing
        instance = Instance(number.instance_name, number.account_id, "", "", None)
        try:
            outcomes = iter(await store_messages(request.app[PINNED], request.app[CTX].pool, instance, messages))
        except InstanceGone:  # removed from the configuration since the cached lookup
            request.app[NUMBERS].forget(number.phone_number_id)
            raise ApiError(404, "unknown_phone_number_id",
                           f"no WhatsApp Cloud number {number.phone_number_id!r} is configured") from None
    results: list[dict[str, Any]] = []
    for m in change.messages:
        if isinstance(m, Message):
            done = next(outcomes)  # in the order of `messages`
            results.append({"id": done.message_id, "status": done.outcome})
        else:
            results.append({"id": m.message_id, "status": "ignored" if isinstance(m, Ignored) else "invalid",
                            "reason": m.reason})
        _count(results[-1]["status"])
    return results


def add_routes(app: web.Application) -> None:
    """Register Meta's webhook routes (after `bot.routes.add_routes`, whose pinned connections it shares)."""
    app[NUMBERS] = NumberCache()
    app.router.add_get(PATH, verify)
    app.router.add_post(PATH, webhook)

