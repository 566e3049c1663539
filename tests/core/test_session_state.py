"""The pool sends no reset on release (core.db `_keep_session`), so nothing may leave session state
on a pooled connection: these tests hold the code to that, and check what asyncpg still does."""

from __future__ import annotations

import ast
import asyncio
import re
from pathlib import Path

import asyncpg

from bot.connections import PinnedConnections
from core.db import create_pool

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("bot", "capi", "core", "crm", "qualification", "qualibot")
# session state a module may create, and why it is safe there
ALLOWED = {
    ("bot/connections.py", "SET plan_cache_mode"): "reset in _give_back before the pool takes it back",
    ("core/migrate.py", "pg_advisory_lock("): "released in the migration's finally",
}
SESSION_STATE = [
    # a statement (not UPDATE's SET clause) that sets a session setting; SQL keywords are upper case here
    re.compile(r"(?:\A|;)\s*SET\s+(?!LOCAL\b)(SESSION\s+)?\w+"),
    re.compile(r"pg_advisory_lock\(", re.I),  # a session lock (the _xact_ ones end with the transaction)
    re.compile(r"(?:\A|;)\s*LISTEN\b"),
    re.compile(r"\bCREATE\s+TEMP(ORARY)?\b", re.I),
]


def sql_strings(path: Path) -> list[str]:
    tree = ast.parse(path.read_text())
    return [n.value for n in ast.walk(tree) if isinstance(n, ast.Constant) and isinstance(n.value, str)]


def test_no_module_leaves_session_state_on_a_pooled_connection() -> None:
    found = []
    for package in PACKAGES:
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            for text in sql_strings(path):
                for pattern in SESSION_STATE:
                    for match in pattern.finditer(text):
                        token = re.sub(r"\s+", " ", match.group(0).strip(" \n;"))
                        if not any(rel == f and token.lower().startswith(t.lower()) for f, t in ALLOWED):
                            found.append(f"{rel}: {token}")
    assert found == [], "session state on a pooled connection (the pool no longer resets it): " + "; ".join(found)


async def test_a_transaction_left_open_is_rolled_back_and_set_local_does_not_leak(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=1)
    try:
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS session_probe (n int)")
        conn = await pool.acquire()
        await conn.execute("BEGIN")  # not through asyncpg's transaction(): left open by a careless caller
        await conn.execute("INSERT INTO session_probe VALUES (1)")
        await conn.execute("SET LOCAL work_mem = '7MB'")
        await pool.release(conn)
        async with pool.acquire() as again:  # max_size=1: the same connection
            assert not again.is_in_transaction()
            assert await again.fetchval("SELECT count(*) FROM session_probe") == 0
            assert await again.fetchval("SHOW work_mem") != "7MB"
    finally:
        await pool.close()


async def test_pinned_connections_go_back_without_their_generic_plans(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=4)
    pinned = PinnedConnections()
    try:
        async with pinned.connection(pool) as conn:
            assert await conn.fetchval("SHOW plan_cache_mode") == "force_generic_plan"
        await pinned.close()
        assert await plan_modes(pool) == {"auto"}
    finally:
        await pool.close()


async def test_a_pinned_connection_that_failed_is_not_reused_with_its_setting(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=4)
    pinned = PinnedConnections()
    try:
        try:
            async with pinned.connection(pool) as conn:
                await conn.execute("SELECT 1/0")
        except asyncpg.DivisionByZeroError:
            pass
        assert await plan_modes(pool) == {"auto"}
    finally:
        await pool.close()


async def plan_modes(pool: asyncpg.Pool) -> set[str]:
    """`plan_cache_mode` on every connection of the pool (all of them held at once)."""
    held = [await pool.acquire() for _ in range(pool.get_max_size())]
    try:
        return {await c.fetchval("SHOW plan_cache_mode") for c in held}
    finally:
        for c in held:
            await pool.release(c)


async def test_a_pinned_connection_in_use_at_close_goes_back_to_the_pool_when_done(database_url: str) -> None:
    pool = await create_pool(database_url, max_size=4)
    pinned = PinnedConnections()
    try:
        async with pinned.connection(pool) as conn:
            await pinned.close()  # the app stops while a webhook's insert still runs
            await conn.fetchval("SELECT 1")
        # every connection can be taken again (a leaked one would make this wait for ever)
        assert await asyncio.wait_for(plan_modes(pool), timeout=10) == {"auto"}
    finally:
        pool.terminate()  # close() would wait for ever on a leaked connection
