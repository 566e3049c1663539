"""The dialog job's reads and writes: the dialog's state, its recent history, the bot reply's record.

A reply is keyed on the burst it answers: `messages.reply_to` holds the id of the burst's last client
message and is unique, so at most one reply per burst exists, whatever reruns or concurrent workers
do. Only this module writes `reply_to`; the reply's own `message_id` is random. Both are out of a
WhatsApp sender's reach: a key like `qb-<dialog>-<message>` in `message_id`, the namespace of
Evolution's key ids, let a client message with that id pass for another chat's reply and suppress it.
A reply is recorded as `pending` before it is sent, and only while the bot is not paused, so an
operator who takes over during the LLM call still stops it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

import asyncpg

from bot.evolution import SendResult
from qualification.jobs import schedule_qualification


@dataclass(frozen=True)
class ReplyState:
    id: int
    instance_name: str
    contact: str
    is_lid: bool
    paused: bool
    direction_id: str | None
    bot_prompt: str | None
    api_url: str | None
    api_key: str | None
    last_client_id: int | None  # messages.id of the newest client message
    replied: bool  # a bot reply to the burst ending at last_client_id exists
    waiting: bool  # a message of this chat is stored but not yet linked by the intake drain

    @property
    def number(self) -> str:
        """Where Evolution sends: phone digits, or the LID JID (Evolution 2.3.5+ sends to @lid)."""
        return f"{self.contact}@lid" if self.is_lid else self.contact


@dataclass(frozen=True)
class Turn:
    role: str  # client | bot | operator
    text: str


async def load_dialog(pool: asyncpg.Pool, dialog_id: int) -> ReplyState | None:
    row = await pool.fetchrow(
        """SELECT d.id, d.instance_name, d.contact_phone AS contact, COALESCE(l.is_lid, false) AS is_lid,
                  COALESCE(d.bot_paused_until > now(), false) AS paused, d.direction_id,
                  ad.bot_prompt, i.api_url, i.api_key, last.id AS last_client_id,
                  EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = last.id) AS replied,
                  EXISTS (SELECT 1 FROM messages w
                          WHERE w.dialog_id IS NULL AND w.intake_error IS NULL
                            AND w.instance_name = d.instance_name
                            AND w.contact = d.contact_phone) AS waiting
           FROM dialog_analysis d
           LEFT JOIN leads l ON l.id = d.lead_id
           LEFT JOIN whatsapp_instances i ON i.name = d.instance_name
           LEFT JOIN account_directions ad ON ad.id = d.direction_id
           LEFT JOIN LATERAL (SELECT max(m.id) AS id FROM messages m
                              WHERE m.dialog_id = d.id AND m.role = 'client') last ON true
           WHERE d.id = $1""",
        dialog_id,
    )
    return ReplyState(**dict(row)) if row else None


async def history(pool: asyncpg.Pool, dialog_id: int, upto: int, limit: int) -> list[Turn]:
    """The `limit` newest messages up to `upto`, oldest first; failed bot sends left out."""
    rows = await pool.fetch(
        """SELECT role, text FROM messages
           WHERE dialog_id = $1 AND id <= $2 AND delivery_status IS DISTINCT FROM 'failed'
           ORDER BY id DESC LIMIT $3""",
        dialog_id, upto, limit,
    )
    return [Turn(r["role"], r["text"]) for r in reversed(rows)]


async def record_reply(pool: asyncpg.Pool, state: ReplyState, text: str) -> int | None:
    """Store the reply as pending; None when this burst already has one or the bot got paused."""
    return await pool.fetchval(  # type: ignore[no-any-return]
        """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, delivery_status, reply_to)
           SELECT d.instance_name, $2, d.id, 'bot', $3, 'pending', $4 FROM dialog_analysis d
           WHERE d.id = $1 AND (d.bot_paused_until IS NULL OR d.bot_paused_until <= now())
           ON CONFLICT (reply_to) WHERE reply_to IS NOT NULL DO NOTHING
           RETURNING id""",
        state.id, f"qb-{uuid.uuid4().hex}", text, state.last_client_id,
    )


async def record_delivery(pool: asyncpg.Pool, message_id: int, result: SendResult) -> None:
    await pool.execute(
        """UPDATE messages SET delivery_status = $2, delivery_error = $3, external_id = $4,
                  sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
           WHERE id = $1""",
        message_id, "sent" if result.ok else "failed", result.error, result.external_id,
    )


async def finish_burst(pool: asyncpg.Pool, state: ReplyState) -> None:
    """Close the burst (unless a newer client message opened another) and ask for qualification."""
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute(
            """UPDATE dialog_analysis SET burst_started_at = NULL, updated_at = now()
               WHERE id = $1 AND burst_started_at IS NOT NULL
                 AND NOT EXISTS (SELECT 1 FROM messages
                                 WHERE dialog_id = $1 AND role = 'client' AND id > $2)""",
            state.id, state.last_client_id or 0,
        )
        await schedule_qualification(conn, state.id)
