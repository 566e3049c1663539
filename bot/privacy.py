"""The people's data on the WhatsApp side (LGPD, GDPR): leads, dialogs and messages of one person,
found, exported and erased; and the retention of message text.

A person is named by `targets`: (account id, phone as international digits) pairs, one per
account the search covers (`qualibot.cmd_privacy` reads the typed phone with each account's
`default_region`). What erasure does here, in the caller's transaction:
- messages: every message of the person's dialogs, and their messages still waiting for the
  intake drain, are deleted (text, push name, referral);
- leads: deleted (phone, push name, email, click id, ad referral);
- dialogs: kept, so the funnel's counts and levels and the audit rows' link stay, but the phone
  becomes `erased-<dialog id>` and the model's reasoning (which may quote the person) is removed.

Retention (`QUALIBOT_MESSAGE_RETENTION_DAYS`, `core.retention` runs it in every worker):
`remove_old_text` blanks the text and push name of linked messages older than that, a batch at a
time, and marks them (`text_removed_at`); roles, times, counts, levels and `capi_events_log` stay.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from bot.lids import forget_lids, lids_of
from core.jobs import Executor
from core.logging import get_logger

log = get_logger("bot.privacy")

Targets = Sequence[tuple[str, str]]  # (account id, phone digits)

ERASED_PREFIX = "erased-"

_TARGETS = "unnest($1::text[], $2::text[]) AS t(account_id, phone)"

# phones compare as WhatsApp identifies people (`whatsapp_phone_key`: Brazil's ninth digit and the
# like); a LID target (see `bot.lids.lids_of`) matches the lead and dialog recorded under that LID
_MATCH = "({col} = t.phone OR whatsapp_phone_key({col}) = whatsapp_phone_key(t.phone))"
_LEADS_SQL = f"""
SELECT l.* FROM leads l JOIN {_TARGETS} ON l.account_id = t.account_id AND {_MATCH.format(col="l.phone")}
ORDER BY l.id"""

_DIALOGS_SQL = f"""
SELECT d.* FROM dialog_analysis d
WHERE d.id IN (SELECT d2.id FROM dialog_analysis d2 JOIN {_TARGETS}
                 ON d2.account_id = t.account_id AND {_MATCH.format(col="d2.contact_phone")}
               UNION
               SELECT d3.id FROM dialog_analysis d3 JOIN leads l ON l.id = d3.lead_id
                 JOIN {_TARGETS} ON l.account_id = t.account_id AND {_MATCH.format(col="l.phone")})
ORDER BY d.id"""

# the person's messages: those of their dialogs, and those still waiting for the drain
_MESSAGES_WHERE = f"""
m.dialog_id = ANY($3::bigint[])
OR (m.dialog_id IS NULL AND EXISTS (
        SELECT 1 FROM whatsapp_instances i JOIN {_TARGETS} ON i.account_id = t.account_id
        WHERE i.name = m.instance_name AND (m.lid = t.phone OR {_MATCH.format(col="m.contact")})))"""


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
    leads = [dict(r) for r in await db.fetch(_LEADS_SQL, accounts, phones)]
    dialogs = [dict(r) for r in await db.fetch(_DIALOGS_SQL, accounts, phones)]
    return Found(leads, dialogs, lids)


async def export_person(db: Executor, targets: Targets, found: Found) -> dict[str, list[dict[str, Any]]]:
    """What is stored about the person here: leads, dialogs, messages (oldest first), LIDs."""
    accounts, phones = _split([*targets, *found.lids])
    messages = await db.fetch(
        f"""SELECT m.id, m.instance_name, m.dialog_id, m.role, m.text, m.media_type, m.sent_at, m.push_name,
                   m.referral, m.delivery_status, m.created_at, m.text_removed_at
            FROM messages m WHERE {_MESSAGES_WHERE} ORDER BY m.id""",
        accounts, phones, found.dialog_ids,
    )
    return {"leads": found.leads, "dialogs": found.dialogs, "messages": [dict(r) for r in messages],
            "whatsapp_lids": [{"account_id": a, "lid": lid} for a, lid in found.lids]}


async def erase_person(conn: asyncpg.Connection, targets: Targets, found: Found) -> dict[str, int]:
    """Delete the person's messages, leads and LID mappings, anonymise their dialogs; rows changed per table."""
    accounts, phones = _split([*targets, *found.lids])
    messages = await conn.fetchval(
        f"WITH gone AS (DELETE FROM messages m WHERE {_MESSAGES_WHERE} RETURNING 1) SELECT count(*) FROM gone",
        accounts, phones, found.dialog_ids,
    )
    dialogs = await conn.fetchval(
        """WITH done AS (
               UPDATE dialog_analysis SET contact_phone = $2 || id, lead_id = NULL, analysis_reasoning = NULL,
                      burst_started_at = NULL, updated_at = now()
               WHERE id = ANY($1::bigint[]) RETURNING 1)
           SELECT count(*) FROM done""",
        found.dialog_ids, ERASED_PREFIX,
    )
    leads = await conn.fetchval(
        "WITH gone AS (DELETE FROM leads WHERE id = ANY($1::bigint[]) RETURNING 1) SELECT count(*) FROM gone",
        [int(lead["id"]) for lead in found.leads],
    )
    lid_rows = await forget_lids(conn, targets)
    return {"messages": int(messages), "leads": int(leads), "dialog_analysis": int(dialogs),
            "whatsapp_lids": lid_rows}


async def remove_old_text(pool: asyncpg.Pool, before: datetime, batch: int) -> int:
    """Blank the text and push name of up to `batch` linked messages received before `before`;
    returns how many. The partial index `messages_retention` makes an idle pass one index probe."""
    return int(await pool.fetchval(
        """WITH old AS (
               SELECT id FROM messages
               WHERE text_removed_at IS NULL AND dialog_id IS NOT NULL AND created_at < $1
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
           done AS (
               UPDATE messages m SET text = '', push_name = NULL, text_removed_at = now()
               FROM old WHERE m.id = old.id RETURNING 1)
           SELECT count(*) FROM done""",
        before, batch,
    ))
