"""One seeded database and one running app per dashboard test module (seeding and a server once, not per test)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aiohttp
import asyncpg
import pytest

from core.settings import Settings
from qualibot.app import create_app
from qualibot.dashboard import viewers
from tests.dashboard_data import seed_dashboard
from tests.helpers import running

ACCOUNTS = ("clinic", "rival")
CHATS = 600
DAYS = 45  # chats older than the default 30-day period exist, so the period is tested too


@dataclass
class Site:
    url: str
    pool: asyncpg.Pool

    async def link(self, account: str | None, name: str = "test viewer") -> str:
        _, token = await viewers.create(self.pool, account, name)
        return f"{self.url}/dashboard/login?token={token}"

    async def session(self, account: str | None) -> aiohttp.ClientSession:
        """A logged-in HTTP session (the cookie jar accepts the 127.0.0.1 cookie)."""
        http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        async with http.get(await self.link(account)) as resp:
            assert resp.status == 200, await resp.text()
        return http


def period_start(days: int = 30) -> datetime:
    today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return today - timedelta(days=days - 1)


async def clear(pool: asyncpg.Pool) -> None:
    tables = await pool.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
    names = [f'"{r["tablename"]}"' for r in tables if r["tablename"] not in {"schema_migrations", "installation"}]
    await pool.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")


@pytest.fixture(scope="module")
async def site(pool: asyncpg.Pool, database_url: str, tmp_path_factory: pytest.TempPathFactory
               ) -> AsyncIterator[Site]:
    await clear(pool)
    async with pool.acquire() as conn:
        await seed_dashboard(conn, ACCOUNTS, chats=CHATS, days=DAYS)
    settings = Settings(database_url=database_url, data_dir=tmp_path_factory.mktemp("data"),
                        openai_api_key=None, meta_graph_url="http://127.0.0.1:9")
    async with running(create_app(settings, pool=pool)) as url:
        yield Site(url, pool)
