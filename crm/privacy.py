"""The people's data in CRM webhook records (LGPD, GDPR): `webhook_events` rows that hold one
person's data, exported or erased.

amoCRM and Bitrix24 webhooks carry contact names and phones (`contacts[update][0][custom_fields]
…[value]=+7 (916) 123-45-67`). A person's rows: the events of the CRM entities their CAPI
decisions were read from, and events of the accounts' connections whose payload holds their
phone in any usual writing (the national number, spaces, brackets, dashes and dots removed).
Erasure deletes those rows: they are copies of what the CRM holds, kept for the record only.
Retention (`QUALIBOT_MESSAGE_RETENTION_DAYS`, run by `core.retention`) deletes rows older than it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

import asyncpg
import phonenumbers

from core.jobs import Executor

_WHERE = r"""
w.connection_id IN (SELECT id FROM crm_connections WHERE account_id = ANY($1::text[]))
AND ((w.source || ':' || w.connection_id || ':' || w.entity_type || ':' || w.entity_id) = ANY($2::text[])
     OR EXISTS (SELECT 1 FROM unnest($3::text[]) AS n(number)
                WHERE regexp_replace(w.payload::text, '[\s().+-]', '', 'g') LIKE '%' || n.number || '%'))"""


def national_numbers(phones: Sequence[str]) -> list[str]:
    """`79161234567` → `9161234567`: the part every writing of the number contains."""
    out = set()
    for phone in phones:
        try:
            out.add(str(phonenumbers.parse("+" + phone, None).national_number))
        except phonenumbers.NumberParseException:
            out.add(phone)
    return sorted(n for n in out if len(n) >= 6)  # too short would match unrelated digits


async def person_events(
    db: Executor, *, accounts: Sequence[str], phones: Sequence[str], entities: Sequence[str]
) -> list[dict[str, Any]]:
    """The webhook_events rows about the person (subject access), oldest first."""
    rows = await db.fetch(
        f"SELECT w.* FROM webhook_events w WHERE {_WHERE} ORDER BY w.id",
        list(accounts), list(entities), national_numbers(phones),
    )
    return [dict(r) for r in rows]


async def erase_person(
    conn: asyncpg.Connection, *, accounts: Sequence[str], phones: Sequence[str], entities: Sequence[str]
) -> int:
    """Delete the person's webhook_events rows; returns how many."""
    return int(await conn.fetchval(
        f"WITH gone AS (DELETE FROM webhook_events w WHERE {_WHERE} RETURNING 1) SELECT count(*) FROM gone",
        list(accounts), list(entities), national_numbers(phones),
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
