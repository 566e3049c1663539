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
from bot.instances import evolution_endpoint
from capi import tenants
from qualification import dialogs, leads


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
    dialog = await dialogs.reply_view(pool, dialog_id)
    if dialog is None:
        return None
    lead = await leads.lead_contact(pool, dialog.lead_id) if dialog.lead_id is not None else None
    endpoint = await evolution_endpoint(pool, dialog.instance_name)
    return ReplyState(
        id=dialog.id, instance_name=dialog.instance_name, contact=dialog.contact, is_lid=bool(lead and lead.is_lid),
        paused=dialog.paused, direction_id=dialog.direction_id,
        bot_prompt=await tenants.bot_prompt(pool, dialog.direction_id),
        api_url=endpoint[0] if endpoint else None, api_key=endpoint[1] if endpoint else None,
        last_client_id=dialog.last_client_id, replied=dialog.replied, waiting=dialog.waiting,
    )


async def history(pool: asyncpg.Pool, dialog_id: int, upto: int, limit: int) -> list[Turn]:
    """The `limit` newest messages up to `upto`, oldest first; failed bot sends left out."""
    return [Turn(role, text) for role, text in await dialogs.recent_messages(pool, dialog_id, upto, limit)]


async def record_reply(pool: asyncpg.Pool, state: ReplyState, text: str) -> int | None:
    """Store the reply as pending; None when this burst already has one or the bot got paused."""
    return await dialogs.insert_reply(pool, state.id, f"qb-{uuid.uuid4().hex}", text, state.last_client_id)


async def record_delivery(pool: asyncpg.Pool, message_id: int, result: SendResult) -> None:
    await dialogs.record_delivery(pool, message_id, "sent" if result.ok else "failed", result.error,
                                  result.external_id)


async def finish_burst(pool: asyncpg.Pool, state: ReplyState) -> None:
    """Close the burst (unless a newer client message opened another)."""
    await dialogs.close_burst(pool, state.id, state.last_client_id or 0)
