"""The HTTP app's own routes and error shapes."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from structlog.testing import capture_logs

from core.db import create_pool
from core.migrate import migrate
from core.settings import Settings
from core.web import ApiError
from qualibot.app import create_app
from tests.dbsetup import admin_dsn, fresh_database
from tests.helpers import running, wait_for


async def test_healthz_and_metrics(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> None:
    async with running(create_app(make_settings(), pool=db)) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/healthz") as resp:
            assert resp.status == 200 and (await resp.json()) == {"status": "ok"}
        async with http.get(f"{url}/metrics") as resp:
            assert resp.status == 200
            assert 'qualibot_jobs{state="queued"} 0.0' in await resp.text()


async def test_healthz_is_503_when_the_database_goes_away(
    make_settings: Callable[..., Settings], tmp_path: Path
) -> None:
    async with fresh_database(tmp_path) as dsn:
        pool = await create_pool(dsn, max_size=2)
        async with pool.acquire() as conn:
            await migrate(conn)
        app = create_app(make_settings(database_url=dsn), pool=pool)
        async with running(app) as url, aiohttp.ClientSession() as http:
            async with http.get(f"{url}/healthz") as resp:
                assert resp.status == 200
            async with admin_dsn(tmp_path) as admin:
                conn = await asyncpg.connect(admin)
                name = dsn.rsplit("/", 1)[1]
                await conn.execute(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false')
                await conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1", name)
                await conn.close()
            with capture_logs() as logs:
                async with http.get(f"{url}/healthz") as resp:
                    # a fixed word: the reason (exception type and text) goes to the log only
                    assert resp.status == 503 and await resp.json() == {"status": "unavailable"}
                # the pool reconnects and PostgreSQL refuses: SQLSTATE 55000, "not currently accepting
                # connections"; a webhook is 503 (its peer retries), not 500
                for _ in range(2):
                    async with http.post(f"{url}/webhooks/bitrix24/b24-main", data=b"event=x") as resp:
                        assert (resp.status, (await resp.json())["error"]) == (503, "database_unavailable")
        assert {e.get("error_type") for e in logs} >= {"ObjectNotInPrerequisiteStateError"}, logs
        await pool.close()


async def test_too_many_connections_is_503(make_settings: Callable[..., Settings], tmp_path: Path) -> None:
    """SQLSTATE 53300: a role whose connection limit is reached (0 here; superusers ignore a database's)."""
    async with fresh_database(tmp_path) as dsn, admin_dsn(tmp_path) as admin:
        role = "qb_limited_" + dsn.rsplit("_", 1)[1]
        conn = await asyncpg.connect(admin)
        await conn.execute(f'CREATE ROLE "{role}" LOGIN CONNECTION LIMIT 0')
        try:
            limited = dsn.replace("postgres@", f"{role}@", 1)
            assert limited != dsn
            pool = await create_pool(limited, max_size=2, min_size=0)
            app = create_app(make_settings(database_url=limited), pool=pool)
            async with running(app) as url, aiohttp.ClientSession() as http:
                with capture_logs() as logs:
                    async with http.post(f"{url}/webhooks/bitrix24/b24-main", data=b"event=x") as resp:
                        assert (resp.status, (await resp.json())["error"]) == (503, "database_unavailable")
            assert [e["error_type"] for e in logs if e["event"] == "http.database_unavailable"] == [
                "TooManyConnectionsError"]
            await pool.close()
        finally:
            await conn.execute(f'DROP ROLE IF EXISTS "{role}"')
            await conn.close()


async def test_a_connection_terminated_mid_query_is_503(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    """SQLSTATE 57P01 (pg_terminate_backend, as an administrator or a failover does)."""
    app = create_app(make_settings(), pool=db)

    async def slow(request: web.Request) -> web.Response:
        await db.execute("SELECT pg_sleep(30)")
        return web.json_response({})

    app.router.add_post("/slow", slow)
    async with running(app) as url, aiohttp.ClientSession() as http:
        answer = asyncio.create_task(http.post(f"{url}/slow"))

        async def sleeping() -> list[int]:
            return [r[0] for r in await db.fetch(
                "SELECT pid FROM pg_stat_activity WHERE query = 'SELECT pg_sleep(30)' AND state = 'active'")]

        for pid in await wait_for(sleeping, what="the request's query to run"):
            await db.execute("SELECT pg_terminate_backend($1)", pid)
        resp = await answer
        assert (resp.status, (await resp.json())["error"]) == (503, "database_unavailable")
        resp.release()


@pytest.mark.parametrize(
    ("sqlstate", "status"),
    [("55000", 503), ("57P01", 503), ("57P02", 503), ("57P03", 503), ("53300", 503), ("08006", 503),
     ("08001", 503), ("42P01", 500), ("57014", 500)],  # undefined table, statement timeout: our problem
)
async def test_sqlstates_that_mean_the_database_refuses_are_503(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], sqlstate: str, status: int
) -> None:
    error = next(c for c in vars(asyncpg.exceptions).values()
                 if isinstance(c, type) and getattr(c, "sqlstate", None) == sqlstate)
    app = create_app(make_settings(), pool=db)

    async def failing(request: web.Request) -> web.Response:
        raise error("the server said no")

    app.router.add_post("/fail", failing)
    async with running(app) as url, aiohttp.ClientSession() as http, http.post(f"{url}/fail") as resp:
        assert resp.status == status
        assert "the server said no" not in await resp.text()


async def test_metrics_can_require_a_bearer_token(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> None:
    token = "metrics-token-0123456789"
    async with running(create_app(make_settings(metrics_token=token), pool=db)) as url, \
            aiohttp.ClientSession() as http:
        for headers in ({}, {"Authorization": f"Bearer {token}-wrong"}, {"Authorization": f"Basic {token}"},
                        {"Authorization": "Bearer"}):
            async with http.get(f"{url}/metrics", headers=headers) as resp:
                assert (resp.status, (await resp.json())["error"]) == (401, "unauthorized")
                assert token not in await resp.text()
        async with http.get(f"{url}/metrics", headers={"Authorization": f"Bearer {token}"}) as resp:
            assert resp.status == 200 and "qualibot_jobs" in await resp.text()
        async with http.get(f"{url}/healthz") as resp:  # the health probe stays open
            assert resp.status == 200


async def test_errors_are_json_and_bodies_are_limited(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(max_body_bytes=1000), pool=db)

    async def echo(request: web.Request) -> web.Response:
        data = await request.read()
        if data == b"bad":
            raise ApiError(422, "bad_thing", "the thing is bad")
        if data == b"boom":
            raise RuntimeError("secret internals")
        return web.json_response({"size": len(data)})

    app.router.add_post("/echo", echo)
    async with running(app) as url, aiohttp.ClientSession() as http:
        async with http.get(f"{url}/nowhere") as resp:
            assert resp.status == 404 and (await resp.json())["error"] == "not_found"
        async with http.post(f"{url}/echo", data=b"x" * 2000) as resp:
            assert resp.status == 413 and (await resp.json())["error"] == "body_too_large"
        async with http.post(f"{url}/echo", data=b"bad") as resp:
            assert resp.status == 422
            assert await resp.json() == {"error": "bad_thing", "detail": "the thing is bad"}
        async with http.post(f"{url}/echo", data=b"boom") as resp:
            assert resp.status == 500
            assert "secret internals" not in await resp.text()
