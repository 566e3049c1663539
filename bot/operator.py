"""Who the bot answers: a direction's `reply_to`, and an operator's pause ended early.

`reply_to` (per direction): `all` answers everyone (the seed's behaviour), `ad_leads` only people
whose lead has a click id (they came from a Click-to-WhatsApp ad; a clinic's existing patients
do not get AI replies), `off` no one. A human operator's message pauses the bot in that chat for
`operator_pause_hours`; `qualibot bot resume` ends the pause early (an Evolution instance by its
name; a WhatsApp Cloud number by its phone_number_id or its instance name `cloud-<phone_number_id>`).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

import asyncpg

from bot.cloud.numbers import load_number, number_of_instance
from bot.instances import load_instance
from capi import tenants
from core.errors import NotFound
from core.phones import normalize_phone
from qualification import dialogs, leads

ReplyTo = Literal["all", "ad_leads", "off"]


async def reply_withheld(db: asyncpg.Pool, dialog_id: int) -> str | None:
    """Why the direction's `reply_to` keeps the bot quiet in this dialog (the reply outcome), or None."""
    dialog = await dialogs.dialog_lead(db, dialog_id)
    setting = (await tenants.reply_to(db, dialog.direction_id) if dialog else None) or "all"  # the seed's
    if setting == "off":
        return "reply_off"
    if setting == "ad_leads":
        lead = await leads.lead_contact(db, dialog.lead_id) if dialog and dialog.lead_id is not None else None
        if lead is None or lead.ctwa_clid is None:
            return "not_ad_lead"
    return None


class ResumeError(NotFound):
    """`resume` could not find what it was asked about; the text names the problem."""


@dataclass(frozen=True)
class Resumed:
    dialog_id: int
    contact: str
    was_paused_until: datetime | None  # None: the bot was not paused


async def resume(pool: asyncpg.Pool, instance: str, phone: str) -> Resumed:
    """End the operator pause of the chat with `phone` (any form WhatsApp treats as the same
    number, or a LID) on `instance`; the bot answers that chat's next message again."""
    found_instance = await _instance(pool, instance.strip())
    if found_instance is None:
        raise ResumeError(f"--instance: no WhatsApp instance {instance!r} is configured "
                          "(an Evolution instance name, or a Cloud number's phone_number_id)")
    instance, account_id = found_instance
    raw = phone.strip().removesuffix("@s.whatsapp.net").removesuffix("@lid")
    digits = normalize_phone(raw, await tenants.default_region(pool, account_id) or "RU")
    if digits is None and not raw.isdigit():
        raise ResumeError(f"--phone: {phone!r} is not a phone number")
    async with pool.acquire() as conn, conn.transaction():
        # the chat by the phone's matching key (Brazil's ninth digit and the like), or by its LID
        for lead in await leads.chat_leads(conn, instance, account_id, digits or raw, raw):
            found = await dialogs.resume_bot(conn, instance, lead.phone)
            if found is not None:
                return Resumed(*found)
    raise ResumeError(f"no chat with {phone!r} on instance {instance!r}: nothing was received from "
                      "that number (check the number and the instance)")


async def _instance(pool: asyncpg.Pool, name: str) -> tuple[str, str] | None:
    """(instance name, account) of an Evolution instance, or of a Cloud number named by its
    phone_number_id (what Meta's pages show) or by its instance name."""
    evolution = await load_instance(pool, name)
    if evolution is not None:
        return evolution.name, evolution.account_id
    cloud = await number_of_instance(pool, name) or (await load_number(pool, name) if name.isdigit() else None)
    return (cloud.instance_name, cloud.account_id) if cloud else None
