"""What a Cloud number's webhook says beside messages (`whatsapp_cloud_notices`).

- `automatic_events`: Meta's own detection of a LeadSubmitted or Purchase in a Click-to-WhatsApp chat.
  Stored with its dialog (found by the message id it names) so reports can compare Meta's
  detection with ours; never sent to the Conversions API: Meta already has it.
- `errors[]`: webhook-level errors Meta reports for the number (e.g. a message it could not read).
One row per notice: a redelivery finds its key and writes nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from bot.cloud.parse import Notice
from core.jobs import Executor
from qualification.dialogs import dialog_of_message


async def store_notice(db: Executor, instance_name: str, notice: Notice) -> bool:
    """Store one notice; False when it was stored before (a redelivery)."""
    dialog_id = await dialog_of_message(db, instance_name, notice.wamid) if notice.wamid else None
    value = await db.fetchval(
        """INSERT INTO whatsapp_cloud_notices (instance_name, kind, notice_key, dialog_id, event_name,
                                               ctwa_clid, body, occurred_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)
           ON CONFLICT (instance_name, kind, notice_key) DO NOTHING RETURNING id""",
        instance_name, notice.kind, notice.key, dialog_id, notice.event_name, notice.ctwa_clid,
        notice.body, notice.at,
    )
    return value is not None


async def dialog_notices(db: Executor, dialog_id: int) -> list[dict[str, Any]]:
    """A dialog's notices, oldest first (for reports and tests)."""
    rows = await db.fetch(
        """SELECT kind, event_name, ctwa_clid, body, occurred_at FROM whatsapp_cloud_notices
           WHERE dialog_id = $1 ORDER BY id""",
        dialog_id,
    )
    return [dict(r) for r in rows]


async def dialogs_notices(db: Executor, dialog_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The notices of these dialogs (a person's, for `qualibot privacy export`)."""
    rows = await db.fetch(
        """SELECT dialog_id, kind, event_name, ctwa_clid, body, occurred_at FROM whatsapp_cloud_notices
           WHERE dialog_id = ANY ($1::bigint[]) ORDER BY id""",
        list(dialog_ids),
    )
    return [dict(r) for r in rows]


async def forget_dialogs(conn: asyncpg.Connection, dialog_ids: Sequence[int]) -> int:
    """Delete these dialogs' notices (privacy erase: they hold the person's click id); how many."""
    status = await conn.execute("DELETE FROM whatsapp_cloud_notices WHERE dialog_id = ANY ($1::bigint[])",
                                list(dialog_ids))
    return int(status.split()[-1])


async def count_notices(db: Executor, instance_name: str) -> dict[str, int]:
    rows = await db.fetch(
        "SELECT kind, count(*)::int AS n FROM whatsapp_cloud_notices WHERE instance_name = $1 GROUP BY kind",
        instance_name,
    )
    return {r["kind"]: r["n"] for r in rows}
