"""Shared fixtures: one fresh database per test run, emptied before each test that asks for it."""

from __future__ import annotations

import asyncio
import warnings
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.db import create_pool
from core.migrate import migrate
from core.settings import Settings
from tests.dbsetup import fresh_database

POOL_CLOSE_SECONDS = 30.0
KEEP_TABLES = {"schema_migrations", "installation"}  # installation: made once by migrate, like in production


@pytest.fixture(scope="session")
async def database_url(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    """DSN of this run's own migrated database."""
    async with fresh_database(tmp_path_factory.mktemp("pg")) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn)
        finally:
            await conn.close()
        yield dsn


@pytest.fixture(scope="session")
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    p = await create_pool(database_url, max_size=20)
    yield p
    try:  # asyncpg's close waits for every connection still out, for ever: a leak must not hang the run
        await asyncio.wait_for(p.close(), timeout=POOL_CLOSE_SECONDS)
    except TimeoutError:
        p.terminate()
        warnings.warn(f"the session pool still had connections out {POOL_CLOSE_SECONDS:g} s after the last test",
                      stacklevel=1)


@pytest.fixture
async def db(pool: asyncpg.Pool) -> asyncpg.Pool:
    """The pool, with every table emptied first, so each test starts from nothing."""
    tables = await pool.fetch(
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public'"
    )
    names = [f'"{r["tablename"]}"' for r in tables if r["tablename"] not in KEEP_TABLES]
    if names:
        await pool.execute(f"TRUNCATE {', '.join(names)} RESTART IDENTITY CASCADE")
    return pool


@pytest.fixture
def make_settings(database_url: str, tmp_path: Path) -> Callable[..., Settings]:
    """Settings for an in-process app or a subprocess, pointed at this run's database."""

    def make(**overrides: Any) -> Settings:
        values: dict[str, Any] = {
            "database_url": database_url,
            "data_dir": tmp_path / "data",
            "buffer_seconds": 0.2,
            "worker_poll_seconds": 0.05,
            "intake_poll_seconds": 0.02,
            "openai_api_key": None,
            # never the real Graph API from a test: a closed local port unless a test passes its fake
            "meta_graph_url": "http://127.0.0.1:9",
        }
        values.update(overrides)
        return Settings(**values)

    return make
