"""The aiohttp application: resources as cleanup contexts, middlewares, routes wiring."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
from aiohttp import web

from core.context import AppContext, make_llm
from core.db import UNAVAILABLE_ERRORS, create_pool, database_dsn
from core.errors import QualibotError
from core.jobs import JobRegistry, Worker
from core.logging import get_logger
from core.settings import Settings
from core.web import CTX, ApiError, error_response, http_status
from qualibot import health
from qualibot.dashboard.routes import add_routes as add_dashboard_routes
from qualibot.secret_values import secrets_kept_current
from qualibot.wiring import add_domain_routes, job_registry

log = get_logger("qualibot.app")

WORKER: web.AppKey[Worker[AppContext]] = web.AppKey("worker", Worker)

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


def _route(request: web.Request) -> str:
    """The route template (`/webhooks/amocrm/{connection_id}/{webhook_secret}`), never the raw path:
    amoCRM webhook URLs carry their secret in the path."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else "(no route)"


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """4xx as `{"error", "detail"}`; a database outage as 503 (so peers retry); other 5xx without internals.

    The one place errors become HTTP answers: our errors by `core.web.http_status`; a database that
    refuses or drops connections is 503; anything else, our SQL's DataError included, is 500 (bad
    input is refused by parsers before any SQL, and Evolution retries a 5xx but not a 4xx)."""
    try:
        return await handler(request)
    except ApiError as exc:
        response = error_response(exc.status, exc.code, exc.detail, **exc.extra)
        if exc.status == 408:
            response.force_close()  # the rest of a trickled body is not worth waiting for
        return response
    except UNAVAILABLE_ERRORS as exc:
        log.warning("http.database_unavailable", path=_route(request), error_type=type(exc).__name__)
        return error_response(503, "database_unavailable", "the database is unavailable; retry later")
    except QualibotError as exc:
        status = http_status(exc)
        if status < 500:
            return error_response(status, exc.code, exc.detail)
        log.error("http.error", path=_route(request), status=status, error_type=type(exc).__name__,
                  error=exc.detail)
        if status == 503:
            return error_response(503, exc.code, "a service qualibot needs is unavailable; retry later")
        return error_response(500, "internal_error", "internal error")
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CTX].settings.max_body_bytes
        return error_response(413, "body_too_large", f"the body exceeds the limit of {limit} bytes")
    except web.HTTPException as exc:
        if exc.status >= 400:
            return error_response(exc.status, exc.reason.lower().replace(" ", "_"), exc.text or exc.reason)
        raise
    except asyncpg.PostgresError as exc:
        # the message alone: str(exc) adds PostgreSQL's DETAIL, which can quote the failing row (phones, texts)
        log.error("http.database_error", path=_route(request), error_type=type(exc).__name__,
                  sqlstate=exc.sqlstate, error=exc.message or type(exc).__name__)
        return error_response(500, "internal_error", "internal error")
    except asyncio.CancelledError:
        raise
    except Exception:
        log.exception("http.unhandled", path=_route(request))
        return error_response(500, "internal_error", "internal error")


@asynccontextmanager
async def running_worker(
    ctx: AppContext, registry: JobRegistry[AppContext] | None = None
) -> AsyncIterator[Worker[AppContext]]:
    """A worker running in the background for the block; on exit, in-flight jobs get the grace period."""
    settings = ctx.settings
    worker = Worker(
        ctx.pool, registry or job_registry(), ctx,
        concurrency=settings.worker_concurrency,
        poll_seconds=settings.worker_poll_seconds,
        lease_seconds=settings.job_lease_seconds,
        idle_poll_seconds=settings.worker_idle_poll_seconds,
        timeout_seconds=settings.job_timeout_seconds,
        retention_days=settings.job_retention_days,
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        await worker.stop(settings.shutdown_grace_seconds)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


def create_app(
    settings: Settings,
    *,
    pool: asyncpg.Pool | None = None,
    with_workers: bool = False,
    registry: JobRegistry[AppContext] | None = None,
) -> web.Application:
    """Build the app. With `pool`, that pool is used (tests); otherwise one is opened on start."""
    # keepalive_timeout is, in aiohttp, also how long a new connection may take to deliver its first
    # request's headers (web_protocol.py connection_made): the header deadline against slow clients
    app = web.Application(middlewares=[error_middleware], client_max_size=settings.max_body_bytes,
                          handler_args={"keepalive_timeout": settings.header_timeout_seconds})

    async def resources(app: web.Application) -> AsyncIterator[None]:
        async with database_dsn(settings) if pool is None else _nothing() as dsn:
            own_pool = pool or await create_pool(dsn or "", max_size=settings.db_pool_max)
            http = aiohttp.ClientSession()
            ctx = AppContext(settings=settings, pool=own_pool, http=http, llm=make_llm(settings))
            app[CTX] = ctx
            try:
                async with secrets_kept_current(own_pool, settings):
                    yield
            finally:
                await http.close()
                if ctx.llm is not None:
                    await ctx.llm.close()
                if pool is None:
                    await own_pool.close()

    async def workers(app: web.Application) -> AsyncIterator[None]:
        async with running_worker(app[CTX], registry) as worker:
            app[WORKER] = worker
            yield

    app.cleanup_ctx.append(resources)
    if with_workers:
        app.cleanup_ctx.append(workers)
    health.add_routes(app)
    add_domain_routes(app)
    add_dashboard_routes(app)
    return app


class _nothing:
    """`async with` that yields None: the pool was given, no DSN to hold."""

    async def __aenter__(self) -> None:
        return None

    async def __aexit__(self, *exc: object) -> None:
        return None
