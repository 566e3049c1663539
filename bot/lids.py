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
   takes the first referral (`qualification.leads`), the dialog the counts, times and pause of both, the
   messages move, `qualification.door.merge_levels` merges levels and CAPI events (each level
   once, none sent twice), and the LID's lead and dialog are deleted.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg

from bot.instances import instance_directions
from core.jobs import Executor
from core.logging import get_logger, mask_phone
from qualification import dialogs, leads
from qualification.door import merge_levels

log = get_logger("bot.lids")

_LEARN_SQL = """
INSERT INTO whatsapp_lids (instance_name, lid, phone)
SELECT * FROM unnest($1::text[], $2::text[], $3::text[])
ON CONFLICT (instance_name, lid) DO NOTHING
"""
_MAPPED_SQL = """
SELECT w.instance_name, w.lid, w.phone FROM whatsapp_lids w
JOIN unnest($1::text[], $2::text[]) AS t(instance_name, lid) ON w.instance_name = t.instance_name AND w.lid = t.lid
ORDER BY w.instance_name, w.lid
"""


async def _mapped(conn: asyncpg.Connection, pairs: list[tuple[str, str]]) -> list[tuple[str, str, str]]:
    rows = await conn.fetch(_MAPPED_SQL, [i for i, _ in pairs], [lid for _, lid in pairs])
    return [(r["instance_name"], r["lid"], r["phone"]) for r in rows]


async def link(conn: asyncpg.Connection, ids: list[int]) -> None:
    """Steps 1-3 above for the batch `ids`, inside the drain's transaction."""
    learnt = await dialogs.batch_lid_phones(conn, ids)
    await conn.execute(_LEARN_SQL, [x[0] for x in learnt], [x[1] for x in learnt], [x[2] for x in learnt])
    await dialogs.give_phones(conn, ids, await _mapped(conn, await dialogs.batch_lids(conn, ids, alone=True)))
    # mapped LIDs of the batch that still have a lead of their own
    mapped = await _mapped(conn, await dialogs.batch_lids(conn, ids, alone=False))
    lid_leads = await leads.lid_leads(conn, [(instance, lid) for instance, lid, _ in mapped])
    for instance, lid, phone in mapped:
        if (instance, lid) in lid_leads:
            await merge(conn, instance, lid, phone, lid_leads[(instance, lid)])


async def merge(conn: asyncpg.Connection, instance: str, lid: str, phone: str, lid_lead: int) -> None:
    """Make the chat recorded under `lid` the chat of `phone` (step 3)."""
    lead = await leads.rename_lead(conn, instance, phone, lid_lead)
    renamed = lead is not None
    if lead is None:
        lead = await leads.merge_lead(conn, phone, lid_lead)
    lid_dialog, phone_dialog = await dialogs.lock_chat_dialogs(conn, instance, lid, phone)
    if lid_dialog is not None and phone_dialog is None:
        await dialogs.rename_dialog(conn, lid_dialog, phone, lead)
        await dialogs.move_messages(conn, lid_dialog, lid_dialog, phone, lid)
    elif lid_dialog is not None and phone_dialog is not None:
        await dialogs.merge_dialog(conn, phone_dialog, lid_dialog, lead, await leads.lead_direction(conn, lead))
        await dialogs.move_messages(conn, lid_dialog, phone_dialog, phone, lid)
        await merge_levels(conn, lid_dialog, phone_dialog, phone)
        await dialogs.delete_dialog(conn, lid_dialog)
    log.info("bot.lid_merged", instance=instance, phone=mask_phone(phone), lead_id=lead,
             dialog_id=phone_dialog or lid_dialog, how="renamed" if renamed and phone_dialog is None else "merged")


# a person's LID mappings, by (instance, phone) pairs, phones compared as WhatsApp does (privacy)
_PERSON_LIDS = """
FROM whatsapp_lids w JOIN unnest($1::text[], $2::text[]) AS t(instance_name, phone)
  ON w.instance_name = t.instance_name AND whatsapp_phone_key(w.phone) = whatsapp_phone_key(t.phone)
"""


async def _chats(db: Executor, targets: Sequence[tuple[str, str]]) -> tuple[list[str], list[str], dict[str, str]]:
    """(instances, phones) of each target's account's instances, and each instance's account."""
    account_of = {name: account_id for name, account_id, _ in await instance_directions(db)}
    pairs = [(name, phone) for account_id, phone in targets for name, acc in account_of.items() if acc == account_id]
    return [n for n, _ in pairs], [p for _, p in pairs], account_of


async def lids_of(db: Executor, targets: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """(account id, LID) pairs the person with these phones was seen under."""
    instances, phones, account_of = await _chats(db, targets)
    rows = await db.fetch(f"SELECT DISTINCT w.instance_name, w.lid {_PERSON_LIDS}", instances, phones)
    return sorted({(account_of[r["instance_name"]], r["lid"]) for r in rows})


async def forget_lids(conn: asyncpg.Connection, targets: Sequence[tuple[str, str]]) -> int:
    """Delete the person's LID mappings (privacy erase); returns how many."""
    return int(await conn.fetchval(
        f"""WITH gone AS (DELETE FROM whatsapp_lids x USING (SELECT w.instance_name, w.lid {_PERSON_LIDS}) p
                          WHERE x.instance_name = p.instance_name AND x.lid = p.lid RETURNING 1)
            SELECT count(*) FROM gone""",
        *(await _chats(conn, targets))[:2],
    ))
