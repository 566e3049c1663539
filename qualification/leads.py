"""The WhatsApp lead: the one module that holds `leads`'s SQL (a chat of an instance, its phone and click id).

It sits in `qualification`, the lowest package that reads leads (bot writes them, crm links CRM
contacts to them, capi is told a dialog's contact through `capi.hooks.DialogContacts`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from core.jobs import Executor

# the WhatsApp matching keys of the given phones (`whatsapp_phone_key`, migration 008: Brazil's
# ninth digit, Mexico's 521/52, Argentina's 549/54), as one array the per-account index is probed with
KEYS = "ANY (ARRAY(SELECT whatsapp_phone_key(p) FROM unnest($2::text[]) p))"
# `{col}` is the phone `t.phone` as WhatsApp identifies people, or that LID as stored
PHONE_MATCH = "({col} = t.phone OR whatsapp_phone_key({col}) = whatsapp_phone_key(t.phone))"


# The lead upsert's rule (the intake drain's insert and the @lid merge): on conflict the newest push
# name, and the first ad referral wins, one with a click id before one without; "first" by the time
# it arrived, so a chat first seen under its LID keeps that referral when merged into its phone's
# lead. The lead's direction is the one whose `ad_ids` hold the referral's ad, else the one it had,
# else the instance's default.
_TAKE = ("(EXCLUDED.referral IS NOT NULL AND (l.referral IS NULL"
         " OR (l.ctwa_clid IS NULL AND EXCLUDED.ctwa_clid IS NOT NULL)"
         " OR ((l.ctwa_clid IS NULL) = (EXCLUDED.ctwa_clid IS NULL) AND EXCLUDED.referral_at < l.referral_at)))")
_REFERRAL_COLUMNS = ("ctwa_clid", "ad_source_id", "ad_source_url", "ad_title", "ad_source_type",
                     "referral", "referral_at")
_REFERRAL_SET = ",\n        ".join(f"{c} = CASE WHEN {_TAKE} THEN EXCLUDED.{c} ELSE l.{c} END"
                                   for c in _REFERRAL_COLUMNS)
AD_DIRECTION = """(SELECT ad.id FROM account_directions ad
     WHERE ad.account_id = {account} AND {ad_id} = ANY (ad.ad_ids) ORDER BY ad.id LIMIT 1)"""

LEAD_CONFLICT = f"""ON CONFLICT (instance_name, phone) DO UPDATE SET
    push_name = COALESCE(EXCLUDED.push_name, l.push_name),
    email = COALESCE(l.email, EXCLUDED.email),
    {_REFERRAL_SET},
    direction_id = CASE
        WHEN {_TAKE} AND EXISTS {AD_DIRECTION.format(account="l.account_id", ad_id="EXCLUDED.ad_source_id")}
        THEN EXCLUDED.direction_id
        ELSE COALESCE(l.direction_id, EXCLUDED.direction_id) END,
    updated_at = now()"""


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


async def lid_leads(conn: asyncpg.Connection, pairs: Sequence[tuple[str, str]]) -> dict[tuple[str, str], int]:
    """(instance, LID) → the lead still recorded under that LID, for those that have one."""
    rows = await conn.fetch(
        """SELECT l.instance_name, l.phone, l.id FROM leads l
           JOIN unnest($1::text[], $2::text[]) AS t(instance_name, lid)
             ON l.instance_name = t.instance_name AND l.phone = t.lid AND l.is_lid""",
        [i for i, _ in pairs], [lid for _, lid in pairs])
    return {(r["instance_name"], r["phone"]): r["id"] for r in rows}


async def rename_lead(conn: asyncpg.Connection, instance: str, phone: str, lead_id: int) -> int | None:
    """The LID's lead becomes the phone's, keeping its id, unless the phone has a lead already."""
    value = await conn.fetchval(
        """UPDATE leads SET phone = $2, is_lid = false, updated_at = now()
           WHERE id = $3 AND NOT EXISTS (SELECT 1 FROM leads WHERE instance_name = $1 AND phone = $2)
           RETURNING id""",
        instance, phone, lead_id)
    return int(value) if value is not None else None


async def merge_lead(conn: asyncpg.Connection, phone: str, lead_id: int) -> int:
    """The LID's lead merges into the phone's by the upsert rule above; returns the phone's lead."""
    return int(await conn.fetchval(
        f"""WITH gone AS (DELETE FROM leads WHERE id = $2 RETURNING *)
            INSERT INTO leads AS l (account_id, instance_name, phone, is_lid, push_name, email, direction_id,
                                    ctwa_clid, ad_source_id, ad_source_url, ad_title, ad_source_type, referral,
                                    referral_at)
            SELECT account_id, instance_name, $1, false, push_name, email, direction_id, ctwa_clid,
                   ad_source_id, ad_source_url, ad_title, ad_source_type, referral, referral_at
            FROM gone
            {LEAD_CONFLICT}
            RETURNING l.id""",
        phone, lead_id))


async def lead_direction(db: Executor, lead_id: int) -> str | None:
    return await db.fetchval("SELECT direction_id FROM leads WHERE id = $1", lead_id)  # type: ignore[no-any-return]


async def lead_ad(db: Executor, lead_id: int) -> dict[str, Any] | None:
    """The ad a lead came from (the dashboard's dialog page)."""
    row = await db.fetchrow(
        """SELECT ad_source_id AS ad_id, ad_title, ad_source_url, ctwa_clid IS NOT NULL AS has_click_id, referral_at
           FROM leads WHERE id = $1""", lead_id)
    return dict(row) if row else None


# per instance and UTC day: new chats, and how many arrived with a click id (a drop: the gateway lost
# the ad data). leads_account_created / leads_created (migration 017) bound the scan to the period.
_CAPTURE_SQL = """
SELECT (created_at AT TIME ZONE 'UTC')::date AS day, instance_name,
       count(*) AS new_chats, count(ctwa_clid) AS with_click_id,
       round(100.0 * count(ctwa_clid) / count(*), 1)::float8 AS click_id_share
FROM leads
WHERE created_at >= $1 {account}
GROUP BY 1, 2 ORDER BY 1, 2"""


async def capture_daily(db: Executor, since: datetime, account: str | None) -> list[dict[str, Any]]:
    """`account` None: every account's instances."""
    if account is None:
        rows = await db.fetch(_CAPTURE_SQL.format(account=""), since)
    else:
        rows = await db.fetch(_CAPTURE_SQL.format(account="AND account_id = $2"), since, account)
    return [dict(r) for r in rows]
