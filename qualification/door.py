"""The one door from levels to CAPI events.

Contract (both the WhatsApp and the CRM path call these, inside their own transaction):
- `record_levels` is the only code that raises a dialog's `is_interested / is_qualified /
  is_scheduled` flags, and it does so together with the `capi_events_log` decisions, so the flags
  and the audit log never disagree.
- Levels only rise; reaching level N also records every lower level not yet recorded, so the
  funnel stays consistent (Lead ≥ CompleteRegistration ≥ Schedule).
- The dialog row is locked (`FOR UPDATE`) first, so two workers recording the same dialog at once
  serialise and each level is recorded once.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Literal

import asyncpg

from capi.ledger import merge_dialog_events
from capi.record import record_event
from core.errors import NotFound
from core.logging import get_logger

log = get_logger("qualification.door")

Source = Literal["whatsapp", "crm"]

# level → (flag column, reached-at column) of dialog_analysis
LEVEL_COLUMNS: dict[int, tuple[str, str]] = {
    1: ("is_interested", "interest_reached_at"),
    2: ("is_qualified", "qualified_reached_at"),
    3: ("is_scheduled", "scheduled_reached_at"),
}


class UnknownDialog(NotFound):
    """`record_levels` was asked about a dialog that does not exist."""


def cumulative(levels: Iterable[int]) -> list[int]:
    """[3] → [1, 2, 3]: the levels implied by reaching the highest of `levels`."""
    wanted = list(levels)
    for level in wanted:
        if level not in LEVEL_COLUMNS:
            raise ValueError(f"level must be 1, 2 or 3, not {level!r}")
    return list(range(1, max(wanted) + 1)) if wanted else []


async def record_levels(
    conn: asyncpg.Connection,
    dialog_id: int,
    levels: Iterable[int],
    source: Source,
    *,
    direction_id: str | None = None,
    reached_at: datetime | None = None,
    crm_entity: str | None = None,
    skip_reason: str | None = None,
) -> list[int]:
    """Record that the dialog reached `levels` (1..3). Levels only rise; reaching N also records
    every lower level not yet recorded. Sets dialog_analysis.is_* and writes one capi_events_log
    row per newly reached level (pending or skipped) via capi.record.record_event. Returns the
    levels newly recorded. `direction_id` defaults to the dialog's direction (the CRM path passes
    the CRM direction). With `skip_reason` the rows are `skipped` with that reason. Must be called
    inside the caller's transaction."""
    implied = cumulative(levels)
    if not implied:
        return []
    # a savepoint inside the caller's transaction; a transaction of its own if the caller forgot
    async with conn.transaction():
        row = await conn.fetchrow(
            """SELECT direction_id, is_interested, is_qualified, is_scheduled
               FROM dialog_analysis WHERE id = $1 FOR UPDATE""",
            dialog_id,
        )
        if row is None:
            raise UnknownDialog(f"dialog {dialog_id} does not exist")
        new = [level for level in implied if not row[LEVEL_COLUMNS[level][0]]]
        if not new:
            return []
        when = reached_at or datetime.now(UTC)
        sets = ", ".join(
            f"{flag} = true, {at} = COALESCE({at}, $2)" for flag, at in (LEVEL_COLUMNS[n] for n in new)
        )
        await conn.execute(
            f"UPDATE dialog_analysis SET {sets}, updated_at = now() WHERE id = $1", dialog_id, when
        )
        for level in new:
            await record_event(
                conn,
                dialog_id=dialog_id,
                direction_id=direction_id or row["direction_id"],
                level=level,
                source=source,
                reached_at=when,
                crm_entity=crm_entity,
                skip_reason=skip_reason,
                # the phone comes from the dialog itself: record_event knows a WhatsApp LID is none
            )
    log.info("qualification.levels_recorded", dialog_id=dialog_id, levels=new, source=source,
             direction=direction_id or row["direction_id"])
    return new


async def record_unlinked(
    conn: asyncpg.Connection,
    *,
    direction_id: str,
    levels: Iterable[int],
    crm_entity: str,
    reason: str,
    reached_at: datetime | None = None,
) -> None:
    """A CRM entity reached `levels` but no WhatsApp lead/dialog could be linked: write `skipped`
    rows (one per entity and level, never duplicated) whose `error` names the entity and `reason`."""
    implied = cumulative(levels)
    if not implied:
        return
    when = reached_at or datetime.now(UTC)
    detail = reason if crm_entity in reason else f"{crm_entity}: {reason}"
    written = []
    async with conn.transaction():
        for level in implied:
            status = await record_event(
                conn,
                dialog_id=None,
                direction_id=direction_id,
                level=level,
                source="crm",
                reached_at=when,
                crm_entity=crm_entity,
                skip_reason=detail,
            )
            if status is not None:
                written.append(level)
    if written:
        log.info("qualification.unlinked_recorded", direction=direction_id, crm_entity=crm_entity,
                 levels=written, reason=reason)


async def merge_levels(conn: asyncpg.Connection, from_dialog: int, into_dialog: int, contact_phone: str) -> None:
    """Two dialogs turned out to be one person (bot.lids: a WhatsApp LID, then its phone): give
    `into_dialog` every level either reached (each once, at the earlier time) and the events
    recorded for them, one per level, none sent twice (`capi.ledger.merge_dialog_events`). The
    analysis watermark is reset unless both were analysed: the merged transcript is new to the
    LLM. Inside the caller's transaction, before `from_dialog` is deleted."""
    sets = ", ".join(f"{flag} = i.{flag} OR f.{flag}, {at} = LEAST(i.{at}, f.{at})"
                     for flag, at in LEVEL_COLUMNS.values())
    await conn.execute(
        f"""UPDATE dialog_analysis i SET {sets},
                analyzed_message_id = CASE WHEN i.analyzed_message_id IS NOT NULL AND f.analyzed_message_id IS NOT NULL
                    THEN LEAST(i.analyzed_message_id, f.analyzed_message_id) END,
                updated_at = now()
            FROM dialog_analysis f WHERE i.id = $1 AND f.id = $2""",
        into_dialog, from_dialog,
    )
    dropped, moved = await merge_dialog_events(conn, from_dialog, into_dialog, contact_phone)
    log.info("qualification.dialogs_merged", from_dialog=from_dialog, into_dialog=into_dialog,
             events_moved=moved, events_dropped=dropped)
