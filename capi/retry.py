"""`capi retry`: re-evaluate `error` and `skipped` rows after a fix, and queue what can now be sent.

Each row is decided again from today's facts (token added, pixel set, click id found, event names
fixed) with `record.decide`, keeping its stored `event_id` and `event_time`, so the sender sends the
event as it would have been sent the first time; a remembered refusal of its event name
(`capi.refusals`) is forgotten, so Meta is asked again. Nothing is sent twice:
- `success` rows are never touched, and the unique (dialog, level) row is updated, never copied;
- an `error` row where Meta acknowledged part of its batch (`events_received` in the response) may
  already count at Meta, which does not deduplicate business-messaging events: it is left alone;
- an event older than 7 days cannot be accepted by Meta any more: it is reported, not queued.
Rows without a dialog (a CRM entity that had no WhatsApp lead) need a CRM re-read to link them;
they are counted as `unlinked` for the caller to handle.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from capi import ledger, refusals
from capi.hooks import DialogContacts
from capi.jobs import schedule_send
from capi.outbox import AGE_MARGIN, MAX_AGE
from capi.record import decide

Status = Literal["error", "skipped"]

@dataclass
class RetryCounts:
    requeued: int = 0
    still_skipped: int = 0
    expired: int = 0
    possibly_delivered: int = 0
    unlinked: list[str] = field(default_factory=list)  # crm_entity of rows without a dialog
    busy: int = 0  # locked by a concurrent retry or sender

    @property
    def total(self) -> int:
        return (self.requeued + self.still_skipped + self.expired + self.possibly_delivered
                + len(self.unlinked) + self.busy)


async def candidates(
    pool: asyncpg.Pool, statuses: list[Status], direction_id: str | None, since: datetime | None
) -> list[int]:
    return await ledger.retry_candidates(pool, statuses, direction_id, since)


async def retry_rows(
    pool: asyncpg.Pool, ids: list[int], *, contacts: DialogContacts, dry_run: bool = False,
    progress: Callable[[int], None] | None = None,
) -> RetryCounts:
    """Re-decide each row in its own short transaction; with `dry_run`, roll every change back."""
    counts = RetryCounts()
    for done, row_id in enumerate(ids, start=1):
        async with pool.acquire() as conn:
            tx = conn.transaction()
            await tx.start()
            try:
                await _retry_one(conn, row_id, counts, contacts)
            except BaseException:
                await tx.rollback()
                raise
            if dry_run:
                await tx.rollback()
            else:
                await tx.commit()
        if progress is not None:
            progress(done)
    return counts


async def _retry_one(conn: asyncpg.Connection, row_id: int, counts: RetryCounts,
                     contacts: DialogContacts) -> None:
    row = await ledger.lock_for_retry(conn, row_id)
    if row is None:
        counts.busy += 1
        return
    if row["dialog_analysis_id"] is None:
        counts.unlinked.append(row["crm_entity"] or f"row {row_id}")
        return
    response = row["response"] or {}
    if row["status"] == "error" and isinstance(response, dict) and response.get("events_received"):
        counts.possibly_delivered += 1
        return
    if datetime.now(UTC) - row["event_time"] > MAX_AGE - AGE_MARGIN:
        counts.expired += 1
        return
    d = await decide(conn, dialog_id=row["dialog_analysis_id"], direction_id=row["direction_id"],
                     level=row["event_level"], reached_at=row["event_time"], crm_entity=row["crm_entity"],
                     contact_phone=row["contact_phone"], event_id=row["event_id"],
                     contacts=contacts)
    if d.skip is not None:
        await ledger.mark_skipped(conn, row_id, d.skip.reason, d.skip.hint)
        counts.still_skipped += 1
        return
    dataset = d.direction["pixel_id"] if d.direction else None
    await ledger.requeue(conn, row_id, d.request, d.event["event_name"], dataset)
    # the operator asks to send again: Meta decides anew on a name it refused before
    await refusals.forget(conn, dataset, d.event["event_name"])
    await schedule_send(conn)
    counts.requeued += 1
