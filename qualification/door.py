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

from capi.hooks import DialogContact
from capi.ledger import merge_dialog_events
from capi.record import record_event
from core.errors import NotFound
from core.logging import get_logger
from qualification import dialogs
from qualification.leads import lead_contact

log = get_logger("qualification.door")

Source = Literal["whatsapp", "crm"]



class UnknownDialog(NotFound):
    """`record_levels` was asked about a dialog that does not exist."""


def cumulative(levels: Iterable[int]) -> list[int]:
    """[3] → [1, 2, 3]: the levels implied by reaching the highest of `levels`."""
    wanted = list(levels)
    for level in wanted:
        if level not in dialogs.LEVEL_COLUMNS:
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
        locked = await dialogs.lock_levels(conn, dialog_id)
        if locked is None:
            raise UnknownDialog(f"dialog {dialog_id} does not exist")
        own_direction, reached = locked
        new = [level for level in implied if level not in reached]
        if not new:
            return []
        when = reached_at or datetime.now(UTC)
        await dialogs.raise_levels(conn, dialog_id, new, when)
        for level in new:
            await record_event(
                conn,
                dialog_id=dialog_id,
                direction_id=direction_id or own_direction,
                level=level,
                source=source,
                reached_at=when,
                crm_entity=crm_entity,
                skip_reason=skip_reason,
                contacts=dialog_contact,  # the phone comes from the dialog: a WhatsApp LID is none
            )
    log.info("qualification.levels_recorded", dialog_id=dialog_id, levels=new, source=source,
             direction=direction_id or own_direction)
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
                contacts=dialog_contact,
            )
            if status is not None:
                written.append(level)
    if written:
        log.info("qualification.unlinked_recorded", direction=direction_id, crm_entity=crm_entity,
                 levels=written, reason=reason)


async def merge_levels(conn: asyncpg.Connection, from_dialog: int, into_dialog: int, contact_phone: str) -> None:
    """Two dialogs turned out to be one person (bot.lids: a WhatsApp LID, then its phone): give
    `into_dialog` every level either reached and the events recorded for them, one per level, none
    sent twice (`capi.ledger.merge_dialog_events`). Inside the caller's transaction, before
    `from_dialog` is deleted."""
    await dialogs.merge_levels(conn, from_dialog, into_dialog)
    dropped, moved = await merge_dialog_events(conn, from_dialog, into_dialog, contact_phone,
                                                dialogs.mark_sent)
    log.info("qualification.dialogs_merged", from_dialog=from_dialog, into_dialog=into_dialog,
             events_moved=moved, events_dropped=dropped)


async def dialog_contact(conn: asyncpg.Connection, dialog_id: int) -> DialogContact | None:
    """capi's `DialogContacts`: the dialog's direction, phone (none for a WhatsApp LID), click id, email."""
    dialog = await dialogs.dialog_lead(conn, dialog_id)
    if dialog is None:
        return None
    lead = await lead_contact(conn, dialog.lead_id) if dialog.lead_id is not None else None
    return DialogContact(
        direction_id=dialog.direction_id,
        phone=None if lead and lead.is_lid else dialog.contact_phone,
        ctwa_clid=lead.ctwa_clid if lead else None,
        email=lead.email if lead else None,
    )
