"""The WhatsApp lead: the one module that holds `leads`'s SQL (a chat of an instance, its phone and click id).

It sits in `qualification`, the lowest package that reads leads (bot writes them, crm links CRM
contacts to them, capi is told a dialog's contact through `capi.hooks.DialogContacts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.jobs import Executor

# the WhatsApp matching keys of the given phones (`whatsapp_phone_key`, migration 008: Brazil's
# ninth digit, Mexico's 521/52, Argentina's 549/54), as one array the per-account index is probed with
KEYS = "ANY (ARRAY(SELECT whatsapp_phone_key(p) FROM unnest($2::text[]) p))"
# `{col}` is the phone `t.phone` as WhatsApp identifies people, or that LID as stored
PHONE_MATCH = "({col} = t.phone OR whatsapp_phone_key({col}) = whatsapp_phone_key(t.phone))"


@dataclass(frozen=True)
class LeadContact:
    ctwa_clid: str | None
    email: str | None
    is_lid: bool
    ad_source_id: str | None


async def lead_contact(db: Executor, lead_id: int) -> LeadContact | None:
    row = await db.fetchrow("SELECT ctwa_clid, email, is_lid, ad_source_id FROM leads WHERE id = $1", lead_id)
    return LeadContact(row["ctwa_clid"], row["email"], row["is_lid"], row["ad_source_id"]) if row else None


@dataclass(frozen=True)
class LeadRef:
    id: int
    instance_name: str
    phone: str


async def by_phones(db: Executor, account_id: str, phones: Sequence[str]) -> list[LeadRef]:
    """The account's leads whose phone WhatsApp treats as one of `phones`."""
    rows = await db.fetch(
        f"SELECT id, instance_name, phone FROM leads WHERE account_id = $1 AND phone_key = {KEYS} ORDER BY id",
        account_id, list(phones))
    return [LeadRef(r["id"], r["instance_name"], r["phone"]) for r in rows]


async def set_email_by_phones(db: Executor, account_id: str, phones: Sequence[str], email: str) -> int:
    """`email` becomes the email of the account's leads with these phones; returns how many changed."""
    status = await db.execute(
        f"""UPDATE leads SET email = $3, updated_at = now()
           WHERE account_id = $1 AND phone_key = {KEYS} AND email IS DISTINCT FROM $3""",
        account_id, list(phones), email,
    )
    return int(status.split()[-1])


async def chat_leads(db: Executor, instance: str, account_id: str, phone: str, raw: str) -> list[LeadRef]:
    """The instance's leads of one chat: by the phone's matching key, or `raw` as stored (a LID);
    phone leads first."""
    rows = await db.fetch(
        """SELECT id, instance_name, phone FROM leads
           WHERE instance_name = $1 AND ((account_id = $2 AND phone_key = whatsapp_phone_key($3)) OR phone = $4)
           ORDER BY is_lid, id""",
        instance, account_id, phone, raw)
    return [LeadRef(r["id"], r["instance_name"], r["phone"]) for r in rows]


async def referral_counts(db: Executor, instances: Sequence[str], window: int) -> list[tuple[str, int, int, bool]]:
    """Per instance, by name: (instance, its newest `window` chats, how many of them arrived with an
    ad referral, whether any chat of it ever did)."""
    rows = await db.fetch(
        """SELECT i.name AS instance, r.chats, r.with_referral,
                  EXISTS (SELECT 1 FROM leads l WHERE l.instance_name = i.name AND l.referral IS NOT NULL) AS ever
           FROM unnest($1::text[]) AS i(name)
           CROSS JOIN LATERAL (
               SELECT count(*)::int AS chats,
                      (count(*) FILTER (WHERE recent.referral IS NOT NULL))::int AS with_referral
               FROM (SELECT l.referral FROM leads l WHERE l.instance_name = i.name
                     ORDER BY l.id DESC LIMIT $2) recent
           ) r
           ORDER BY i.name""",
        list(instances), window)
    return [(r["instance"], r["chats"], r["with_referral"], r["ever"]) for r in rows]


async def person_leads(db: Executor, accounts: Sequence[str], phones: Sequence[str]) -> list[dict[str, Any]]:
    """The leads of (account, phone or LID) pairs, oldest first (privacy export and erasure)."""
    rows = await db.fetch(
        f"""SELECT l.* FROM leads l JOIN unnest($1::text[], $2::text[]) AS t(account_id, phone)
              ON l.account_id = t.account_id AND {PHONE_MATCH.format(col="l.phone")}
            ORDER BY l.id""",
        list(accounts), list(phones))
    return [dict(r) for r in rows]


async def delete_leads(conn: asyncpg.Connection, lead_ids: Sequence[int]) -> int:
    status = await conn.execute("DELETE FROM leads WHERE id = ANY($1::bigint[])", list(lead_ids))
    return int(status.split()[-1])
