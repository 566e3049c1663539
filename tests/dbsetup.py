"""A fresh database for one test run: on TEST_DATABASE_URL, the machine's PostgreSQL, or embedded."""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from core.embedded import EmbeddedPostgres

LOCAL_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


def with_database(dsn: str, database: str) -> str:
    parts = urlsplit(dsn)
    return urlunsplit((parts.scheme, parts.netloc, "/" + database, parts.query, parts.fragment))


async def _reachable(dsn: str) -> bool:
    try:
        conn = await asyncpg.connect(dsn, timeout=3)
    except Exception:
        return False
    await conn.close()
    return True


@asynccontextmanager
async def admin_dsn(tmp_dir: Path) -> AsyncIterator[str]:
    explicit = os.environ.get("TEST_DATABASE_URL")
    if explicit:
        yield explicit
        return
    if await _reachable(LOCAL_SERVER):
        yield LOCAL_SERVER
        return
    embedded = EmbeddedPostgres(tmp_dir)
    dsn = embedded.start()
    try:
        yield dsn
    finally:
        embedded.close()


@asynccontextmanager
async def fresh_database(tmp_dir: Path) -> AsyncIterator[str]:
    """Create `qualibot_test_<random>` on the admin server, yield its DSN, drop it afterwards."""
    async with admin_dsn(tmp_dir) as admin:
        name = f"qualibot_test_{uuid.uuid4().hex[:10]}"
        conn = await asyncpg.connect(admin)
        try:
            await conn.execute(f'CREATE DATABASE "{name}"')
        finally:
            await conn.close()
        try:
            yield with_database(admin, name)
        finally:
            conn = await asyncpg.connect(admin)
            try:
                await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            finally:
                await conn.close()
