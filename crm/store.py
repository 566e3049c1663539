"""Accepting a CRM webhook: its entity events stored and their syncs scheduled, in one transaction."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from crm.events import insert_events
from crm.jobs import schedule_sync


@dataclass(frozen=True)
class EntityEvent:
    event: str  # leads.status, contacts.update, ONCRMDEALUPDATE, ...
    entity_type: str  # lead | contact | company | deal
    entity_id: str
    payload: dict[str, Any]
    sync: bool = True  # False for deletions: stored for the record, nothing to read


async def store_events(
    pool: asyncpg.Pool, source: str, connection_id: str, events: list[EntityEvent], *, delay: float
) -> int:
    """Store every event and schedule one sync per entity; returns the number of syncs scheduled."""
    entities = sorted({(e.entity_type, e.entity_id) for e in events if e.sync})
    async with pool.acquire() as conn, conn.transaction():
        await insert_events(conn, [(source, connection_id, e.event, e.entity_type, e.entity_id, e.payload)
                                   for e in events])
        # sorted, so concurrent webhooks naming the same entities lock their job rows in one order
        for entity_type, entity_id in entities:
            await schedule_sync(conn, connection_id, entity_type, entity_id, delay=delay)
    return len(entities)
