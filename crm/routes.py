"""CRM webhook routes: verify, store the entity events, schedule their syncs, answer 200 fast.

amoCRM disables a webhook after 100 invalid answers in two hours and waits at most 2 s;
Bitrix24 never retries. So the handler does no CRM call: it commits the events and the sync
jobs in one transaction and answers. Rejections (404 unknown connection, 401 wrong secret or
token, 400 not a CRM webhook) write nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from aiohttp import web

from core.errors import QualibotError
from core.logging import get_logger
from core.metrics import WEBHOOKS
from core.web import CTX, ApiError, http_status, read_body, storable
from crm import webhook_amocrm, webhook_bitrix24
from crm.connections import load_connection
from crm.form import Form, parse_form
from crm.store import store_events

log = get_logger("crm.routes")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
RESULTS = {400: "bad_request", 401: "unauthorized", 404: "unknown_connection", 408: "too_slow", 413: "too_large"}


async def read_form(request: web.Request) -> Form:
    if request.content_type in ("application/json", "text/json"):
        raise ApiError(400, "not_form_encoded", "a CRM webhook is application/x-www-form-urlencoded, not JSON")
    body = await read_body(request)
    if not body.strip():
        raise ApiError(400, "empty_body", "the body is empty; a form-encoded CRM webhook was expected")
    return parse_form(body, request.app[CTX].settings.form_max_fields)  # FormError: 400 invalid_form


def counted(source: str, handler: Handler) -> Handler:
    """Count every answer in qualibot_webhooks_total{source, result}."""

    async def wrapped(request: web.Request) -> web.StreamResponse:
        try:
            response = await handler(request)
        except QualibotError as exc:
            status = http_status(exc)
            if status >= 500:
                WEBHOOKS.labels(source, "error").inc()
                raise
            WEBHOOKS.labels(source, RESULTS.get(status, str(status))).inc()
            log.info("crm.webhook_rejected", source=source, status=status, code=exc.code,
                     connection=request.match_info.get("connection_id"))
            raise
        except Exception:
            WEBHOOKS.labels(source, "error").inc()
            raise
        WEBHOOKS.labels(source, "accepted").inc()
        return response

    return wrapped


async def amocrm_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    connection_id = request.match_info["connection_id"]
    connection = await load_connection(ctx.pool, connection_id, "amocrm") if storable(connection_id) else None
    if connection is None:
        raise ApiError(404, "unknown_connection", f"no amoCRM connection {connection_id[:60]!r}")
    if not webhook_amocrm.secret_matches(connection, request.match_info["webhook_secret"]):
        raise ApiError(401, "invalid_secret", "the webhook secret in the URL is not this connection's")
    form = await read_form(request)
    webhook_amocrm.check_account(form, connection)
    hook = webhook_amocrm.parse(form)
    scheduled = 0
    if hook.events:
        scheduled = await store_events(ctx.pool, "amocrm", connection.id, hook.events,
                                       delay=ctx.settings.crm_sync_delay_seconds)
    log.info("crm.webhook_accepted", source="amocrm", connection=connection.id, events=len(hook.events),
             syncs=scheduled, ignored=hook.ignored)
    return web.json_response({"ok": True, "events": len(hook.events), "syncs": scheduled, "ignored": hook.ignored})


async def bitrix24_webhook(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    connection_id = request.match_info["connection_id"]
    connection = await load_connection(ctx.pool, connection_id, "bitrix24") if storable(connection_id) else None
    if connection is None:
        raise ApiError(404, "unknown_connection", f"no Bitrix24 connection {connection_id[:60]!r}")
    form = await read_form(request)
    if not webhook_bitrix24.token_matches(form, connection):
        raise ApiError(401, "invalid_application_token",
                       "auth[application_token] is missing or not this connection's")
    event = webhook_bitrix24.parse(form)
    scheduled = await store_events(ctx.pool, "bitrix24", connection.id, [event],
                                   delay=ctx.settings.crm_sync_delay_seconds)
    log.info("crm.webhook_accepted", source="bitrix24", connection=connection.id, crm_event=event.event,
             entity_type=event.entity_type, syncs=scheduled)
    return web.json_response({"ok": True, "events": 1, "syncs": scheduled})


def add_routes(app: web.Application) -> None:
    """Register this package's webhook routes on the app."""
    app.router.add_post("/webhooks/amocrm/{connection_id}/{webhook_secret}", counted("amocrm", amocrm_webhook))
    app.router.add_post("/webhooks/bitrix24/{connection_id}", counted("bitrix24", bitrix24_webhook))
