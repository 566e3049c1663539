"""Who the bot answers: a direction's `reply_to`, and an operator's pause ended early.

`reply_to` (per direction): `all` answers everyone (the seed's behaviour), `ad_leads` only people
whose lead has a click id (they came from a Click-to-WhatsApp ad; a clinic's existing patients
do not get AI replies), `off` no one. A human operator's message pauses the bot in that chat for
`operator_pause_hours`; `qualibot bot resume` ends the pause early.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from core.errors import NotFound
from core.phones import normalize_phone

ReplyTo = Literal["all", "ad_leads", "off"]


async def reply_withheld(db: asyncpg.Pool, dialog_id: int) -> str | None:
    """Why the direction's `reply_to` keeps the bot quiet in this dialog (the reply outcome), or None."""
    row = await db.fetchrow(
        """SELECT ad.reply_to, l.ctwa_clid IS NOT NULL AS ad_lead
           FROM dialog_analysis d
           LEFT JOIN leads l ON l.id = d.lead_id
           LEFT JOIN account_directions ad ON ad.id = d.direction_id
           WHERE d.id = $1""",
        dialog_id,
    )
    reply_to = (row["reply_to"] if row else None) or "all"  # no direction: the seed's behaviour
    if reply_to == "off":
        return "reply_off"
    if reply_to == "ad_leads" and not (row and row["ad_lead"]):
        return "not_ad_lead"
    return None


class ResumeError(NotFound):
    """`resume` could not find what it was asked about; the text names the problem."""


@dataclass(frozen=True)
class Resumed:
    dialog_id: int
    contact: str
    was_paused_until: datetime | None  # None: the bot was not paused


_INSTANCE_SQL = """
SELECT i.account_id, u.default_region AS region
FROM whatsapp_instances i JOIN user_accounts u ON u.id = i.account_id WHERE i.name = $1"""
# the chat by the phone's matching key (Brazil's ninth digit and the like), or by its LID
_RESUME_SQL = """
WITH chat AS (
    SELECT d.id, d.contact_phone, d.bot_paused_until FROM leads l
    JOIN dialog_analysis d ON d.instance_name = l.instance_name AND d.contact_phone = l.phone
    WHERE l.instance_name = $1
      AND ((l.account_id = $2 AND l.phone_key = whatsapp_phone_key($3)) OR l.phone = $4)
    ORDER BY l.is_lid, d.id LIMIT 1 FOR UPDATE OF d
), resumed AS (
    UPDATE dialog_analysis d SET bot_paused_until = NULL, updated_at = now()
    FROM chat WHERE d.id = chat.id AND d.bot_paused_until > now()
)
SELECT id, contact_phone, CASE WHEN bot_paused_until > now() THEN bot_paused_until END AS paused_until FROM chat
"""


async def resume(pool: asyncpg.Pool, instance: str, phone: str) -> Resumed:
    """End the operator pause of the chat with `phone` (any form WhatsApp treats as the same
    number, or a LID) on `instance`; the bot answers that chat's next message again."""
    inst = await pool.fetchrow(_INSTANCE_SQL, instance)
    if inst is None:
        raise ResumeError(f"--instance: no WhatsApp instance {instance!r} is configured")
    raw = phone.strip().removesuffix("@s.whatsapp.net").removesuffix("@lid")
    digits = normalize_phone(raw, inst["region"])
    if digits is None and not raw.isdigit():
        raise ResumeError(f"--phone: {phone!r} is not a phone number")
    row = await pool.fetchrow(_RESUME_SQL, instance, inst["account_id"], digits or raw, raw)
    if row is None:
        raise ResumeError(f"no chat with {phone!r} on instance {instance!r}: nothing was received from "
                          "that number (check the number and the instance)")
    return Resumed(row["id"], row["contact_phone"], row["paused_until"])
