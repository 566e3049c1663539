"""The people's data in `capi_events_log` (LGPD, GDPR): one person's audit rows, exported or erased.

The rows stay (they are the audit of what was sent to Meta and why); erasure removes what
identifies the person: `contact_phone`, and in the stored request copy every `user_data` field
but the business's own ids (`ph`, `em`, `fn`, `ln`, … hashed or not, and the ad click id
`ctwa_clid`). A row not yet sent (`pending`) or failed (`error`) becomes `skipped` with the
reason, so nothing about the person goes to Meta after the erasure. What Meta already received
cannot be recalled from here.

A person's rows: those of their dialogs, and rows of the accounts' directions whose phone or
hashed phone / email is theirs (CRM decisions with no dialog).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import asyncpg

from capi import ledger, tenants
from capi.normalize import hash_email, hash_phone
from core.jobs import Executor

# user_data fields that identify the business, not the person: kept in an erased row
BUSINESS_FIELDS = frozenset({"whatsapp_business_account_id", "page_id"})
ERASED_REASON = "erased at the person's request (qualibot privacy erase): not sent"

def _hashes(phones: Sequence[str], emails: Sequence[str]) -> tuple[list[str], list[str]]:
    ph = [h for p in phones if (h := hash_phone("+" + p))]
    em = [h for e in emails if (h := hash_email(e))]
    return ph, em


async def person_rows(
    db: Executor, *, dialog_ids: Sequence[int], accounts: Sequence[str], phones: Sequence[str],
    emails: Sequence[str] = (),
) -> list[dict[str, Any]]:
    """The person's capi_events_log rows (subject access), oldest first."""
    ph, em = _hashes(phones, emails)
    directions = await tenants.direction_ids_of_accounts(db, accounts)
    return await ledger.person_rows(db, list(dialog_ids), directions, list(phones), ph, em)


def crm_entities(rows: Sequence[dict[str, Any]]) -> list[str]:
    """The CRM entities (`amocrm:<connection>:lead:123`) these rows were decided from."""
    return sorted({str(r["crm_entity"]) for r in rows if r.get("crm_entity")})


def scrub_request(request: Any) -> Any:
    """The stored request with every person's field of `user_data` removed."""
    if not isinstance(request, dict) or not isinstance(request.get("data"), list):
        return request
    data = []
    for event in request["data"]:
        if isinstance(event, dict) and isinstance(event.get("user_data"), dict):
            kept = {k: v for k, v in event["user_data"].items() if k in BUSINESS_FIELDS}
            event = {**event, "user_data": kept}
        data.append(event)
    return {**request, "data": data}


async def erase_person(conn: asyncpg.Connection, rows: Sequence[dict[str, Any]]) -> int:
    """Null the personal fields of `rows` (from `person_rows`, same transaction); returns how many."""
    for row in rows:
        await ledger.erase_row(conn, row["id"], scrub_request(row["request"]), ERASED_REASON)
    return len(rows)
