"""A few database connections kept out of the pool for intake's one INSERT.

Why: they run with `plan_cache_mode = force_generic_plan`, a session setting the rest of the
code must not inherit: planning intake's statement would cost more than running it, and its
generic plan is a probe of two unique indexes. These connections are borrowed from the app's pool
once and reused; one that fails in any way goes back to the pool with the setting reset (or is
discarded) and a fresh one is borrowed next time. All of them are returned when the app stops.

How many: all of the pool but 3, at most 8. Every webhook's commit waits for its WAL flush, so
too few connections cap the webhooks per second while the CPUs idle; the 3 left serve the
workers, the intake drain and health checks.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg

from bot.group_commit import GroupCommit
from core.db import UNAVAILABLE_ERRORS

MAX_PINNED = 8
GENERIC_PLANS = "SET plan_cache_mode = force_generic_plan"
DEFAULT_PLANS = "RESET plan_cache_mode"  # before going back: the pool's own reset sends nothing (core.db)
# a connection the server closed under us can also surface as a protocol state error
CONNECTION_STATE_ERRORS = (asyncpg.exceptions.InternalClientError, asyncpg.PostgresConnectionError)


class PinnedConnections:
    """Up to `size` connections borrowed from the pool given on first use (all of it but 3 at most)."""

    def __init__(self, size: int = MAX_PINNED) -> None:
        self.size = size
        self._pool: asyncpg.Pool | None = None
        self._slots: asyncio.Queue[asyncpg.Connection | None] = asyncio.Queue()
        self._closes = 0  # a connection borrowed before a close goes back to the pool when its use ends
        self.writer: GroupCommit[Any, Any] | None = None  # intake's group commit on these connections (bot.intake)

    def _bind(self, pool: asyncpg.Pool) -> None:
        self._pool = pool
        # leave a few to everything else (workers, the intake drain, health checks)
        self.size = max(1, min(self.size, pool.get_max_size() - 3))
        for _ in range(self.size):
            self._slots.put_nowait(None)

    @asynccontextmanager
    async def connection(self, pool: asyncpg.Pool) -> AsyncIterator[asyncpg.Connection]:
        if self._pool is None:
            self._bind(pool)
        conn = await self._slots.get()
        closes = self._closes
        try:
            if conn is None or not _usable(conn):
                conn = await pool.acquire()
                await conn.execute(GENERIC_PLANS)
            yield conn
        except BaseException as exc:
            self._slots.put_nowait(None)
            if conn is not None:
                await self._give_back(conn)
            if is_connection_error(exc):  # the others are likely gone too (a database restart)
                await self.close()
            raise
        if closes != self._closes:  # closed meanwhile (the app stopping, or a dead database): not kept
            self._slots.put_nowait(None)
            await self._give_back(conn)
            return
        self._slots.put_nowait(conn)

    async def _give_back(self, conn: asyncpg.Connection) -> None:
        if self._pool is None or _released(conn):
            return  # asyncpg took it back already (its server connection was lost)
        reset = not conn.is_closed() and not conn.is_in_transaction()
        if reset:
            try:
                await conn.execute(DEFAULT_PLANS)
            except Exception:
                reset = False
        if not reset:  # it must not go back to the pool with the setting: drop it
            conn.terminate()
        try:
            await self._pool.release(conn)
        except Exception:  # noqa: S110  # the pool has already dropped it
            pass

    async def close(self) -> None:
        """Return every idle connection to the pool (at shutdown, or when one was found dead); one in
        use goes back when its use ends."""
        self._closes += 1
        idle = []
        while not self._slots.empty():
            idle.append(self._slots.get_nowait())
        for _ in idle:
            self._slots.put_nowait(None)
        for conn in idle:
            if conn is not None:
                await self._give_back(conn)


def _released(conn: asyncpg.Connection) -> bool:
    """asyncpg already took this connection back into the pool (its proxy answers nothing more)."""
    try:
        conn.is_closed()
    except asyncpg.InterfaceError:
        return True
    return False


def _usable(conn: asyncpg.Connection) -> bool:
    try:
        return not conn.is_closed()
    except asyncpg.InterfaceError:  # asyncpg took it back into the pool when its server connection was lost
        return False


def is_connection_error(exc: BaseException) -> bool:
    """The connection (not the statement) failed: safe to run the statement again on another one."""
    return isinstance(exc, UNAVAILABLE_ERRORS + CONNECTION_STATE_ERRORS)
