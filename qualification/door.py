"""The one door from levels to CAPI events (implemented by the qualification issue).

Contract (both the WhatsApp and the CRM path call these, inside their own transaction):
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from typing import Literal

import asyncpg

Source = Literal["whatsapp", "crm"]


async def record_levels(
    conn: asyncpg.Connection,
    dialog_id: int,
    levels: Iterable[int],
    source: Source,
    *,
    direction_id: str | None = None,
    reached_at: datetime | None = None,
    crm_entity: str | None = None,
) -> list[int]:
    """Record that the dialog reached `levels` (1..3). Levels only rise; reaching N also records
    every lower level not yet recorded. Sets dialog_analysis.is_* and writes one capi_events_log
    row per newly reached level (pending or skipped) via capi.record.record_event. Returns the
    levels newly recorded. `direction_id` defaults to the dialog's direction (the CRM path passes
    the CRM direction). Must be called inside the caller's transaction."""
    raise NotImplementedError


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
    raise NotImplementedError
