"""`GET /healthz` and `GET /metrics`."""

from __future__ import annotations

import asyncio
import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Gauge, generate_latest

from bot.drift import referral_shares
from core.jobs import counts_by_status
from core.logging import get_logger
from core.metrics import NEW_CHATS_WITH_REFERRAL
from core.web import CTX, ApiError

JOBS = Gauge("qualibot_jobs", "Jobs in the queue by state", ["state"])
log = get_logger("qualibot.health")


async def healthz(request: web.Request) -> web.Response:
    """200 `ok` or 503 `unavailable`: a fixed word for anyone who can reach the port; the reason is logged."""
    ctx = request.app[CTX]
    try:
        await asyncio.wait_for(ctx.pool.fetchval("SELECT 1"), timeout=2.0)
    except Exception as exc:
        log.warning("healthz.database_unavailable", error_type=type(exc).__name__, error=str(exc)[:200])
        return web.json_response({"status": "unavailable"}, status=503)
    return web.json_response({"status": "ok"})


def _authorized(request: web.Request, token: str) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(given.strip().encode(), token.encode())


async def metrics(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    token = ctx.settings.metrics_token
    if token and not _authorized(request, token):
        raise ApiError(401, "unauthorized", "/metrics requires Authorization: Bearer <QUALIBOT_METRICS_TOKEN>")
    try:
        counts = await asyncio.wait_for(counts_by_status(ctx.pool), timeout=2.0)
        for state in ("queued", "running", "failed"):
            JOBS.labels(state=state).set(counts.get(state, 0))
        shares = await asyncio.wait_for(referral_shares(ctx.pool, ctx.settings.click_id_drift_chats), timeout=2.0)
        for s in shares:
            if s.share is not None:
                NEW_CHATS_WITH_REFERRAL.labels(instance=s.instance).set(s.share)
    except Exception:  # noqa: S110  # metrics still answer without the database; /healthz reports it
        pass
    body = generate_latest(REGISTRY)
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/metrics", metrics)
