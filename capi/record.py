"""Turning one reached level into one capi_events_log row (implemented by the CAPI issue).

Contract used by qualification.door:
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import asyncpg


async def record_event(
    conn: asyncpg.Connection,
    *,
    dialog_id: int | None,
    direction_id: str | None,
    level: int,
    source: Literal["whatsapp", "crm"],
    reached_at: datetime,
    crm_entity: str | None = None,
    contact_phone: str | None = None,
    skip_reason: str | None = None,
) -> str | None:
    """Insert the (dialog, level) decision: `pending` when it can be sent, else `skipped` with the
    reason in `error` (CAPI off, no pixel, no token, no click id, or the given `skip_reason`).
    The event name comes from the direction (seed defaults Lead / CompleteRegistration /
    Schedule); `event_id` is stable for (dialog, level). ON CONFLICT DO NOTHING: returns the new
    row's status, or None when the decision already existed. A pending row schedules the sender.
    Runs inside the caller's transaction."""
    raise NotImplementedError
