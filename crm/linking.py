"""From a CRM entity's phones to the WhatsApp dialogs of the same account.

Phones are compared the way WhatsApp identifies people (`qualification.leads.by_phones`), so a
CRM's `+55 31 98888-7777` finds the chat `553188887777` (Brazil's ninth digit and the like).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from core.phones import normalize_phone
from qualification import dialogs, leads
from qualification.dialogs import DialogRef


@dataclass(frozen=True)
class Links:
    phones: list[str]  # normalised, in the CRM's order, without duplicates
    lead_count: int  # WhatsApp leads of the account with one of these phones
    dialogs: list[DialogRef]


def normalize_all(raw_phones: Iterable[str], default_region: str) -> list[str]:
    found: list[str] = []
    for raw in raw_phones:
        phone = normalize_phone(raw, default_region)
        if phone is not None and phone not in found:
            found.append(phone)
    return found


async def find_links(conn: asyncpg.Connection, account_id: str, phones: list[str]) -> Links:
    """The account's WhatsApp leads with these phones and their dialogs (by lead id, or by the
    lead's instance and phone for a dialog that predates its lead link)."""
    if not phones:
        return Links(phones, 0, [])
    found = await leads.by_phones(conn, account_id, phones)
    return Links(phones, len(found), await dialogs.of_leads(conn, account_id, found))


def unlinked_reason(links: Links) -> str:
    if not links.phones:
        return "the CRM entity has no phone number that could be read"
    shown = ", ".join(links.phones)
    if links.lead_count == 0:
        return f"no WhatsApp lead with phone {shown}"
    return f"the WhatsApp lead with phone {shown} has no dialog"


async def store_email(conn: asyncpg.Connection, account_id: str, phones: list[str], email: str) -> int:
    """The CRM's email becomes the email of the account's WhatsApp leads with these phones, matched
    as `find_links` matches them (the CRM is where sales people keep it current; no email in the CRM
    leaves the lead's alone). Returns how many leads changed."""
    return await leads.set_email_by_phones(conn, account_id, phones, email) if phones else 0
