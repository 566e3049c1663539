"""The HTTP app's own routes and error shapes."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

from core.db import create_pool
from core.migrate import migrate
from core.settings import Settings
from core.web import ApiError
from qualibot.app import create_app
from tests.dbsetup import admin_dsn, fresh_database
from tests.helpers import running


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
            async with http.get(f"{url}/healthz") as resp:
                body = await resp.json()
                assert resp.status == 503 and body["status"] == "unavailable"
        await pool.close()


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
