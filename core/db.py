"""The asyncpg pool, and where its DSN comes from (the configured server or the embedded one)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from core.embedded import EmbeddedPostgres
from core.errors import Retryable
from core.settings import Settings


class DatabaseUnavailable(Retryable):
    """The pool could not open a connection: refused, reset, no server socket, or no answer in time."""

    code = "database_unavailable"


async def _connect(*args: Any, **kwargs: Any) -> asyncpg.Connection:
    """asyncpg.connect, with a network failure on the way to the database said as such: an OSError
    or a timeout here is the database's absence, while elsewhere it may be anything."""
    try:
        return await asyncpg.connect(*args, **kwargs)
    except (OSError, TimeoutError) as exc:  # the text may name the host or socket path: the type only
        raise DatabaseUnavailable(f"cannot connect to the database ({type(exc).__name__})") from exc

# Errors that mean "the database is not reachable right now" rather than "our SQL is wrong": the
# connection is gone or refused (SQLSTATE class 08, asyncpg's PostgresConnectionError, which
# includes a connection closed mid-query; 57P01-57P03 shutdown / crash / starting up; 57P05 idle
# timeout; 53300 too many connections; 55000 "database is not currently accepting connections",
# which also covers its 55P03 lock-not-available: a retry may succeed there too), or the pool's
# connect failed (DatabaseUnavailable), or a socket to it was refused or reset. Not every OSError or
# timeout: a file, a peer's socket or a slow query of ours is our problem (500), not the database's
# absence (503).
UNAVAILABLE_ERRORS: tuple[type[BaseException], ...] = (
    DatabaseUnavailable,
    ConnectionRefusedError,
    ConnectionResetError,
    asyncpg.exceptions.PostgresConnectionError,
    asyncpg.exceptions.CannotConnectNowError,
    asyncpg.exceptions.AdminShutdownError,
    asyncpg.exceptions.CrashShutdownError,
    asyncpg.exceptions.IdleSessionTimeoutError,
    asyncpg.exceptions.TooManyConnectionsError,
    asyncpg.exceptions.ObjectNotInPrerequisiteStateError,
)


async def _init_connection(conn: asyncpg.Connection) -> None:
    # JSON columns in and out as Python objects, everywhere
    for typ in ("json", "jsonb"):
        await conn.set_type_codec(typ, encoder=json.dumps, decoder=json.loads, schema="pg_catalog")


async def _keep_session(_conn: asyncpg.Connection) -> None:
    """The pool's reset (asyncpg's `reset=`): nothing to send.

    asyncpg's default sends `SELECT pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL` on
    every release: a second round trip for each query made through the pool, ~40 per chat (issue
    18.2). Our code leaves no session state on a pooled connection: advisory locks are transaction
    locks (migrate's session lock is released in its `finally`), settings are `SET LOCAL`, LISTEN
    runs on a connection of its own (`core.jobs`), cursors live inside transactions; a module that
    sets something for the session undoes it before it gives the connection back
    (`bot.connections`), and tests/core/test_session_state.py checks the SQL for the rest. asyncpg
    still rolls back a transaction left open before calling this.
    """


async def create_pool(dsn: str, *, max_size: int = 10, min_size: int = 1) -> asyncpg.Pool:
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        connect=_connect,
        reset=_keep_session,
        command_timeout=60,
        timeout=10,
    )
    assert pool is not None
    return pool


@asynccontextmanager
async def database_dsn(settings: Settings) -> AsyncIterator[str]:
    """Yield the DSN to use: `DATABASE_URL`, or an embedded server held for the block's duration."""
    if settings.database_url:
        yield settings.database_url
        return
    embedded = EmbeddedPostgres(settings.data_dir)
    dsn = embedded.start()
    try:
        yield dsn
    finally:
        embedded.close()


@asynccontextmanager
async def open_pool(settings: Settings, *, max_size: int | None = None) -> AsyncIterator[asyncpg.Pool]:
    async with database_dsn(settings) as dsn:
        pool = await create_pool(dsn, max_size=max_size or settings.db_pool_max)
        try:
            yield pool
        finally:
            await pool.close()
