"""The people's data on the WhatsApp side (LGPD, GDPR): leads, dialogs and messages of one person,
found, exported and erased; and the retention of message text.

A person is named by `targets`: (account id, phone as international digits) pairs, one per
account the search covers (`qualibot.cmd_privacy` reads the typed phone with each account's
`default_region`). What erasure does here, in the caller's transaction:
- messages: every message of the person's dialogs, and their messages still waiting for the
  intake drain, are deleted (text, push name, referral);
- leads: deleted (phone, push name, email, click id, ad referral);
- Meta's automatic events and errors of their dialogs (`whatsapp_cloud_notices`: the click id): deleted;
- dialogs: kept, so the funnel's counts and levels and the audit rows' link stay, but the phone
  becomes `erased-<dialog id>` and the model's reasoning (which may quote the person) is removed.

Retention (`QUALIBOT_MESSAGE_RETENTION_DAYS`, `core.retention` runs it in every worker):
`qualification.dialogs.remove_old_text` blanks the text and push name of linked messages older than that, a batch at a
time, and marks them (`text_removed_at`); roles, times, counts, levels and `capi_events_log` stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.cloud import notices
from bot.instances import instance_directions
from bot.lids import forget_lids, lids_of
from core.jobs import Executor
from core.logging import get_logger
from qualification import dialogs, leads

log = get_logger("bot.privacy")

Targets = Sequence[tuple[str, str]]  # (account id, phone digits)

ERASED_PREFIX = "erased-"

def _split(targets: Targets) -> tuple[list[str], list[str]]:
    return [a for a, _ in targets], [p for _, p in targets]


@dataclass(frozen=True)
class Found:
    """The person's rows on the WhatsApp side."""

    leads: list[dict[str, Any]]
    dialogs: list[dict[str, Any]]
    lids: list[tuple[str, str]]  # (account id, LID) the person was seen under

    @property
    def dialog_ids(self) -> list[int]:
        return [int(d["id"]) for d in self.dialogs]

    @property
    def emails(self) -> list[str]:
        return sorted({str(lead["email"]) for lead in self.leads if lead["email"]})


async def find_person(db: Executor, targets: Targets) -> Found:
    lids = await lids_of(db, targets)
    accounts, phones = _split([*targets, *lids])
    found = await leads.person_leads(db, accounts, phones)
    person_dialogs = await dialogs.person_dialogs(db, accounts, phones, [int(lead["id"]) for lead in found])
    return Found(found, person_dialogs, lids)


async def export_person(db: Executor, targets: Targets, found: Found) -> dict[str, list[dict[str, Any]]]:
    """What is stored about the person here: leads, dialogs, messages (oldest first), LIDs."""
    messages = await dialogs.person_messages(db, found.dialog_ids, await _waiting_chats(db, [*targets, *found.lids]))
    return {"leads": found.leads, "dialogs": found.dialogs, "messages": messages,
            "whatsapp_lids": [{"account_id": a, "lid": lid} for a, lid in found.lids],
            "whatsapp_cloud_notices": await notices.dialogs_notices(db, found.dialog_ids)}


async def erase_person(conn: asyncpg.Connection, targets: Targets, found: Found) -> dict[str, int]:
    """Delete the person's messages, leads and LID mappings, anonymise their dialogs; rows changed per table."""
    messages = await dialogs.delete_person_messages(
        conn, found.dialog_ids, await _waiting_chats(conn, [*targets, *found.lids]))
    anonymised = await dialogs.anonymise(conn, found.dialog_ids, ERASED_PREFIX)
    deleted = await leads.delete_leads(conn, [int(lead["id"]) for lead in found.leads])
    lid_rows = await forget_lids(conn, targets)
    notice_rows = await notices.forget_dialogs(conn, found.dialog_ids)
    return {"messages": messages, "leads": deleted, "dialog_analysis": anonymised, "whatsapp_lids": lid_rows,
            "whatsapp_cloud_notices": notice_rows}


async def _waiting_chats(db: Executor, targets: Targets) -> list[tuple[str, str]]:
    """(instance, phone or LID) of every instance of each target's account: where the person's
    messages still waiting for the intake drain are."""
    by_account: dict[str, list[str]] = {}
    for name, account_id, _ in await instance_directions(db):
        by_account.setdefault(account_id, []).append(name)
    return [(name, phone) for account_id, phone in targets for name in by_account.get(account_id, [])]
