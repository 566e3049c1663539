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
from typing import Any

import asyncpg
import phonenumbers

from core.jobs import Executor
from crm import events
from crm.connections import connection_ids_of_accounts


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
    connections = await connection_ids_of_accounts(db, accounts)
    return await events.person_events(db, connections, entities, national_numbers(phones))


async def erase_person(
    conn: asyncpg.Connection, *, accounts: Sequence[str], phones: Sequence[str], entities: Sequence[str]
) -> int:
    """Delete the person's webhook_events rows; returns how many."""
    connections = await connection_ids_of_accounts(conn, accounts)
    return await events.delete_person_events(conn, connections, entities, national_numbers(phones))
