"""A chat first seen as `<lid>@lid` and later with its phone is one person: one lead, one dialog.

WhatsApp's LIDs hide the phone; Evolution forwards a message keyed by the LID alone when Baileys
does not know the phone, and names both when it does (`bot.parse.lid_beside`). The intake drain
calls `link` for a batch that names a LID, in its transaction, before it upserts leads:
1. it learns the batch's LID → phone mappings (`whatsapp_lids`, this module's table; the first
   mapping of a LID stays);
2. gives the batch's LID-only messages of a mapped LID their phone (the LID kept in
   `messages.lid`), so they join the phone's lead and dialog;
3. merges a lead and dialog recorded under a mapped LID into the phone's. With no phone lead yet
   the LID's are renamed, keeping their ids, events and event ids. With both, the phone's lead
   takes the first referral (`bot.leads`), the dialog the counts, times and pause of both, the
   messages move, `qualification.door.merge_levels` merges levels and CAPI events (each level
   once, none sent twice), and the LID's lead and dialog are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bot.leads import LEAD_CONFLICT
from core.jobs import Executor
from core.logging import get_logger, mask_phone
from qualification.door import merge_levels

log = get_logger("bot.lids")

LEARN_SQL = """
INSERT INTO whatsapp_lids (instance_name, lid, phone)
SELECT DISTINCT ON (instance_name, lid) instance_name, lid, contact FROM messages
WHERE id = ANY ($1::bigint[]) AND lid IS NOT NULL AND NOT is_lid
ORDER BY instance_name, lid, id
ON CONFLICT (instance_name, lid) DO NOTHING
"""
REWRITE_SQL = """
UPDATE messages m SET contact = w.phone, is_lid = false, lid = m.contact
FROM whatsapp_lids w
WHERE m.id = ANY ($1::bigint[]) AND m.is_lid AND w.instance_name = m.instance_name AND w.lid = m.contact
"""
# mapped LIDs of the batch that still have a lead of their own
PAIRS_SQL = """
SELECT DISTINCT w.instance_name, w.lid, w.phone, l.id AS lid_lead
FROM messages m
JOIN whatsapp_lids w ON w.instance_name = m.instance_name AND w.lid = m.lid
JOIN leads l ON l.instance_name = w.instance_name AND l.phone = w.lid AND l.is_lid
WHERE m.id = ANY ($1::bigint[]) AND m.lid IS NOT NULL
ORDER BY w.instance_name, w.lid
"""
RENAME_LEAD_SQL = """
UPDATE leads SET phone = $2, is_lid = false, updated_at = now()
WHERE id = $3 AND NOT EXISTS (SELECT 1 FROM leads WHERE instance_name = $1 AND phone = $2)
RETURNING id
"""
MERGE_LEAD_SQL = f"""
WITH gone AS (DELETE FROM leads WHERE id = $2 RETURNING *)
INSERT INTO leads AS l (account_id, instance_name, phone, is_lid, push_name, email, direction_id, ctwa_clid,
                        ad_source_id, ad_source_url, ad_title, ad_source_type, referral, referral_at)
SELECT account_id, instance_name, $1, false, push_name, email, direction_id, ctwa_clid,
       ad_source_id, ad_source_url, ad_title, ad_source_type, referral, referral_at
FROM gone
{LEAD_CONFLICT}
RETURNING l.id
"""
FIND_DIALOGS_SQL = """
SELECT (SELECT id FROM dialog_analysis WHERE instance_name = $1 AND contact_phone = $2 FOR UPDATE) AS lid_dialog,
       (SELECT id FROM dialog_analysis WHERE instance_name = $1 AND contact_phone = $3 FOR UPDATE) AS phone_dialog
"""
RENAME_DIALOG_SQL = """
UPDATE dialog_analysis SET contact_phone = $2, lead_id = $3, updated_at = now() WHERE id = $1
"""
MERGE_DIALOG_SQL = """
UPDATE dialog_analysis i SET
    lead_id = $3,
    direction_id = COALESCE((SELECT direction_id FROM leads WHERE id = $3), i.direction_id, f.direction_id),
    client_message_count = i.client_message_count + f.client_message_count,
    last_client_message_at = GREATEST(i.last_client_message_at, f.last_client_message_at),
    last_message_at = GREATEST(i.last_message_at, f.last_message_at),
    burst_started_at = LEAST(i.burst_started_at, f.burst_started_at),
    bot_paused_until = GREATEST(i.bot_paused_until, f.bot_paused_until),
    created_at = LEAST(i.created_at, f.created_at),
    updated_at = now()
FROM dialog_analysis f WHERE i.id = $1 AND f.id = $2
"""
MOVE_MESSAGES_SQL = """
UPDATE messages SET dialog_id = $2, contact = $3, is_lid = false, lid = $4 WHERE dialog_id = $1
"""


async def link(conn: asyncpg.Connection, ids: list[int]) -> None:
    """Steps 1-3 above for the batch `ids`, inside the drain's transaction."""
    await conn.execute(LEARN_SQL, ids)
    await conn.execute(REWRITE_SQL, ids)
    for pair in await conn.fetch(PAIRS_SQL, ids):
        await merge(conn, pair["instance_name"], pair["lid"], pair["phone"], pair["lid_lead"])


async def merge(conn: asyncpg.Connection, instance: str, lid: str, phone: str, lid_lead: int) -> None:
    """Make the chat recorded under `lid` the chat of `phone` (step 3)."""
    lead = await conn.fetchval(RENAME_LEAD_SQL, instance, phone, lid_lead)
    renamed = lead is not None
    if not renamed:
        lead = await conn.fetchval(MERGE_LEAD_SQL, phone, lid_lead)
    dialogs = await conn.fetchrow(FIND_DIALOGS_SQL, instance, lid, phone)
    assert dialogs is not None
    lid_dialog, phone_dialog = dialogs["lid_dialog"], dialogs["phone_dialog"]
    if lid_dialog is not None and phone_dialog is None:
        await conn.execute(RENAME_DIALOG_SQL, lid_dialog, phone, lead)
        await conn.execute(MOVE_MESSAGES_SQL, lid_dialog, lid_dialog, phone, lid)
    elif lid_dialog is not None:
        await conn.execute(MERGE_DIALOG_SQL, phone_dialog, lid_dialog, lead)
        await conn.execute(MOVE_MESSAGES_SQL, lid_dialog, phone_dialog, phone, lid)
        await merge_levels(conn, lid_dialog, phone_dialog, phone)
        await conn.execute("DELETE FROM dialog_analysis WHERE id = $1", lid_dialog)
    log.info("bot.lid_merged", instance=instance, phone=mask_phone(phone), lead_id=lead,
             dialog_id=phone_dialog or lid_dialog, how="renamed" if renamed and phone_dialog is None else "merged")


# a person's LID mappings, by (account id, phone) targets, phones compared as WhatsApp does (privacy)
_PERSON_LIDS = """
FROM whatsapp_lids w JOIN whatsapp_instances i ON i.name = w.instance_name
JOIN unnest($1::text[], $2::text[]) AS t(account_id, phone)
  ON i.account_id = t.account_id AND whatsapp_phone_key(w.phone) = whatsapp_phone_key(t.phone)
"""


async def lids_of(db: Executor, targets: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(account id, LID) pairs the person with these phones was seen under."""
    rows = await db.fetch(f"SELECT DISTINCT i.account_id, w.lid {_PERSON_LIDS} ORDER BY 1, 2",
                          [a for a, _ in targets], [p for _, p in targets])
    return [(r["account_id"], r["lid"]) for r in rows]


async def forget_lids(conn: asyncpg.Connection, targets: Sequence[tuple[str, str]]) -> int:
    """Delete the person's LID mappings (privacy erase); returns how many."""
    return int(await conn.fetchval(
        f"""WITH gone AS (DELETE FROM whatsapp_lids x USING (SELECT w.instance_name, w.lid {_PERSON_LIDS}) p
                          WHERE x.instance_name = p.instance_name AND x.lid = p.lid RETURNING 1)
            SELECT count(*) FROM gone""",
        [a for a, _ in targets], [p for _, p in targets],
    ))
