"""The funnel's daily rollup (migration 017) always equals counting capi_events_log itself, whatever
writes the log: inserts, status changes, renames, deletes, TRUNCATE, concurrent writers and mergers
(a deadlock among writers failed this test when the triggers upserted shared counter rows)."""

from __future__ import annotations

import asyncio
import random
from typing import Any

import asyncpg

from qualibot.reports import FUNNEL, Filters, fetch, merge_funnel_rollup

# what capi_funnel_daily was before the rollup (migration 006): a count over the whole log
DIRECT = """
SELECT direction_id, pixel_id, (created_at AT TIME ZONE 'UTC')::date AS day, event_level, event_name,
       count(*) FILTER (WHERE status = 'success') AS success, count(*) FILTER (WHERE status = 'error') AS error,
       count(*) FILTER (WHERE status = 'skipped') AS skipped, count(*) FILTER (WHERE status = 'pending') AS pending,
       count(*) AS total
FROM capi_events_log GROUP BY 1, 2, 3, 4, 5 ORDER BY 3, 1, 2, 4, 5"""

INSERT = """
INSERT INTO capi_events_log (direction_id, pixel_id, event_name, event_level, event_id, source, status, created_at)
SELECT $1, $2, 'Lead', 1 + i % 3, $3 || '-' || i, 'whatsapp', 'pending', now() - make_interval(days => i % 4)
FROM generate_series(1, $4::int) i"""


def ordered(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(rows, key=lambda r: (r["day"], r["direction_id"] or "", r["pixel_id"] or "",
                                       r["event_level"], r["event_name"]))


async def direct(db: asyncpg.Pool) -> list[dict[str, Any]]:
    return ordered([dict(r) for r in await db.fetch(DIRECT)])


async def shown(db: asyncpg.Pool) -> list[dict[str, Any]]:
    return ordered(await fetch(db, FUNNEL, Filters()))


async def test_every_kind_of_write_keeps_the_rollup_equal_to_the_log(db: asyncpg.Pool) -> None:
    await db.execute("INSERT INTO user_accounts (id, name) VALUES ('acc', 'Acc')")
    await db.execute("INSERT INTO account_directions (id, account_id, name) VALUES ('d1', 'acc', 'D1'), "
                     "('d2', 'acc', 'D2')")
    await db.execute(INSERT, "d1", "px1", "a", 30)
    await db.execute(INSERT, "d2", None, "b", 20)
    await db.execute(INSERT, None, None, "c", 5)  # decisions without a direction
    assert await shown(db) == await direct(db) and len(await direct(db)) > 10
    await db.execute("UPDATE capi_events_log SET status = 'success', sent_at = now() WHERE id % 2 = 0")
    await db.execute("UPDATE capi_events_log SET attempts = attempts + 1")  # moves nothing
    await db.execute("UPDATE capi_events_log SET status = 'error' WHERE id % 5 = 0")
    await db.execute("UPDATE capi_events_log SET event_name = 'LeadSubmitted' WHERE id % 3 = 0")
    await db.execute("UPDATE capi_events_log SET direction_id = NULL WHERE direction_id = 'd2' AND id % 4 = 1")
    await db.execute("DELETE FROM capi_events_log WHERE id % 7 = 0")
    assert await shown(db) == await direct(db)
    deltas = await db.fetchval("SELECT count(*) FROM capi_funnel_rollup WHERE NOT merged")
    assert deltas > 0 and await merge_funnel_rollup(db)
    assert await db.fetchval("SELECT count(*) FROM capi_funnel_rollup WHERE NOT merged") == 0
    assert await shown(db) == await direct(db)
    await db.execute("DELETE FROM account_directions WHERE id = 'd1'")  # ON DELETE SET NULL in the log
    assert await shown(db) == await direct(db)
    await db.execute("TRUNCATE capi_events_log")
    assert await shown(db) == [] and await db.fetchval("SELECT count(*) FROM capi_funnel_rollup") == 0


async def test_concurrent_writers_finish_and_the_rollup_still_adds_up(db: asyncpg.Pool) -> None:
    await db.execute("INSERT INTO user_accounts (id, name) VALUES ('acc', 'Acc')")
    await db.execute("INSERT INTO account_directions (id, account_id, name) VALUES ('d1', 'acc', 'D1')")
    rng = random.Random(7)

    async def writer(n: int) -> None:
        for k in range(15):
            async with db.acquire() as conn, conn.transaction():
                await conn.execute(INSERT, "d1", "px", f"w{n}-{k}", rng.randint(1, 8))
                await conn.execute(
                    "UPDATE capi_events_log SET status = $1 WHERE id IN "
                    "(SELECT id FROM capi_events_log WHERE status = 'pending' ORDER BY id LIMIT 5 "
                    "FOR UPDATE SKIP LOCKED)", rng.choice(["success", "error", "skipped"]))

    async def merger() -> None:
        for _ in range(10):
            await merge_funnel_rollup(db)
            await asyncio.sleep(0.01)

    await asyncio.gather(*(writer(n) for n in range(6)), merger(), merger())
    assert await shown(db) == await direct(db)
    await merge_funnel_rollup(db)
    assert await shown(db) == await direct(db)
