"""CRM webhook records: the one module that holds `webhook_events`'s SQL.

Each entity event of an accepted webhook is kept for the record (`crm.store`); a person's rows are
exported or erased (`crm.privacy`), and rows past retention are deleted (`core.retention`).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg

from core.jobs import Executor

# the events of these connections about these entities, or whose payload holds one of the numbers
# in any usual writing (spaces, brackets, dashes and dots removed)
_PERSON = r"""
w.connection_id = ANY($1::text[])
AND ((w.source || ':' || w.connection_id || ':' || w.entity_type || ':' || w.entity_id) = ANY($2::text[])
     OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS n(number)
                WHERE regexp_replace(w.payload::text, '[\s().+-]', '', 'g') LIKE '%' || n.number || '%'))"""


async def insert_events(conn: asyncpg.Connection, rows: Sequence[tuple[str, str, str, str, str, Any]]) -> None:
    """(source, connection_id, event, entity_type, entity_id, payload) rows."""
    await conn.executemany(
        """INSERT INTO webhook_events (source, connection_id, event, entity_type, entity_id, payload)
           VALUES ($1, $2, $3, $4, $5, $6)""",
        rows,
    )


async def person_events(db: Executor, connection_ids: Sequence[str], entities: Sequence[str],
                        numbers: Sequence[str]) -> list[dict[str, Any]]:
    rows = await db.fetch(f"SELECT w.* FROM webhook_events w WHERE {_PERSON} ORDER BY w.id",
                          list(connection_ids), list(entities), list(numbers))
    return [dict(r) for r in rows]


async def delete_person_events(conn: asyncpg.Connection, connection_ids: Sequence[str], entities: Sequence[str],
                               numbers: Sequence[str]) -> int:
    return int(await conn.fetchval(
        f"WITH gone AS (DELETE FROM webhook_events w WHERE {_PERSON} RETURNING 1) SELECT count(*) FROM gone",
        list(connection_ids), list(entities), list(numbers),
    ))


async def remove_old_events(pool: asyncpg.Pool, before: datetime, batch: int) -> int:
    """Delete up to `batch` webhook records received before `before`; returns how many."""
    return int(await pool.fetchval(
        """WITH old AS (SELECT id FROM webhook_events WHERE received_at < $1
                        ORDER BY received_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                gone AS (DELETE FROM webhook_events w USING old WHERE w.id = old.id RETURNING 1)
           SELECT count(*) FROM gone""",
        before, batch,
    ))
