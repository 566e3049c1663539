"""From a CRM entity's phones to the WhatsApp dialogs of the same account.

Phones are compared the way WhatsApp identifies people: by `whatsapp_phone_key` (migration 008),
so a CRM's `+55 31 98888-7777` finds the chat `553188887777` (Brazil's ninth digit, and Mexico's
521/52 and Argentina's 549/54 likewise). `leads.phone_key` holds the key, indexed per account.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import asyncpg

from core.phones import normalize_phone

# the keys of the given phones, as one array the index is probed with
KEYS = "ANY (ARRAY(SELECT whatsapp_phone_key(p) FROM unnest($2::text[]) p))"


@dataclass(frozen=True)
class LinkedDialog:
    id: int
    direction_id: str | None
    contact_phone: str


@dataclass(frozen=True)
class Links:
    phones: list[str]  # normalised, in the CRM's order, without duplicates
    lead_count: int  # WhatsApp leads of the account with one of these phones
    dialogs: list[LinkedDialog]


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
    lead_count = await conn.fetchval(
        f"SELECT count(*) FROM leads WHERE account_id = $1 AND phone_key = {KEYS}", account_id, phones
    )
    rows = await conn.fetch(
        f"""SELECT DISTINCT d.id, d.direction_id, d.contact_phone
           FROM leads l
           JOIN dialog_analysis d
             ON d.account_id = l.account_id
            AND (d.lead_id = l.id OR (d.instance_name = l.instance_name AND d.contact_phone = l.phone))
           WHERE l.account_id = $1 AND l.phone_key = {KEYS}
           ORDER BY d.id""",
        account_id, phones,
    )
    return Links(phones, int(lead_count), [LinkedDialog(r["id"], r["direction_id"], r["contact_phone"]) for r in rows])


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
    if not phones:
        return 0
    status = await conn.execute(
        f"""UPDATE leads SET email = $3, updated_at = now()
           WHERE account_id = $1 AND phone_key = {KEYS} AND email IS DISTINCT FROM $3""",
        account_id, phones, email,
    )
    return int(status.split()[-1])
