"""Accounts, ad accounts and directions: the one module that holds the SQL of `user_accounts`,
`ad_accounts` and `account_directions` reads.

It sits in `capi`, the lowest package that reads them (the sender needs the dataset and the token);
the packages above call these functions. Which Meta token wins is SQL's `capi_meta_token`
(migration 015).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import asyncpg

from core.jobs import Executor

_DIRECTION_FOR_EVENT_SQL = """
SELECT d.id, d.account_id, d.ad_account_id, d.capi_enabled, d.pixel_id, d.whatsapp_business_account_id,
       d.capi_test_event_code, capi_event_name(d.capi_event_names, $2) AS event_name, d.capi_event_values,
       u.default_region,
       capi_meta_token(a.access_token, u.access_token) IS NOT NULL AS has_token
FROM account_directions d
JOIN user_accounts u ON u.id = d.account_id
LEFT JOIN ad_accounts a ON a.id = d.ad_account_id
WHERE d.id = $1"""


async def direction_for_event(db: Executor, direction_id: str, level: int) -> asyncpg.Record | None:
    """What deciding a level's event needs of its direction: dataset, name, value, token present."""
    return await db.fetchrow(_DIRECTION_FOR_EVENT_SQL, direction_id, level)


async def meta_tokens(db: Executor, direction_ids: Iterable[str]) -> dict[str, str | None]:
    """The Meta token each direction's events are sent with (its ad account's, else its account's)."""
    rows = await db.fetch(
        """SELECT d.id, capi_meta_token(a.access_token, u.access_token) AS token
           FROM account_directions d
           JOIN user_accounts u ON u.id = d.account_id
           LEFT JOIN ad_accounts a ON a.id = d.ad_account_id
           WHERE d.id = ANY($1::text[])""", list(direction_ids))
    return {r["id"]: r["token"] for r in rows}


async def default_region(db: Executor, account_id: str) -> str | None:
    """How the account's local phone numbers are read (`8 916 ...`); None: no such account."""
    value = await db.fetchval("SELECT default_region FROM user_accounts WHERE id = $1", account_id)
    return str(value) if value is not None else None


async def reply_to(db: Executor, direction_id: str | None) -> str | None:
    """The direction's `reply_to` (all | ad_leads | off); None: no direction."""
    if direction_id is None:
        return None
    value = await db.fetchval("SELECT reply_to FROM account_directions WHERE id = $1", direction_id)
    return str(value) if value is not None else None


async def event_config_fingerprints(db: Executor, direction_ids: Iterable[str]) -> dict[str, str]:
    """Per direction, a fingerprint of its event-name config (`capi_event_names` and
    `capi_allow_unlisted_event_names`): a refusal of a name holds while it is unchanged."""
    rows = await db.fetch(
        """SELECT id, md5(capi_event_names::text || ':' || capi_allow_unlisted_event_names::text) AS fp
           FROM account_directions WHERE id = ANY($1::text[])""",
        sorted(set(direction_ids)))
    return {r["id"]: r["fp"] for r in rows}


async def direction_ids_of_accounts(db: Executor, accounts: Iterable[str]) -> list[str]:
    rows = await db.fetch("SELECT id FROM account_directions WHERE account_id = ANY($1::text[])", list(accounts))
    return [r["id"] for r in rows]


async def bot_prompt(db: Executor, direction_id: str | None) -> str | None:
    """The direction's chatbot prompt; None: no direction or none set."""
    if direction_id is None:
        return None
    value = await db.fetchval("SELECT bot_prompt FROM account_directions WHERE id = $1", direction_id)
    return str(value) if value is not None else None


@dataclass(frozen=True)
class QualificationSetup:
    capi_enabled: bool
    capi_source: str | None  # whatsapp | crm
    qualification_prompt: str | None
    analyse_dialogs: str  # ad_leads | all
    min_confidence: float  # levels 2-3 below it are held for review


async def qualification_setup(db: Executor, direction_id: str) -> QualificationSetup | None:
    row = await db.fetchrow(
        """SELECT capi_enabled, capi_source, qualification_prompt, analyse_dialogs, min_confidence
           FROM account_directions WHERE id = $1""", direction_id)
    return QualificationSetup(**dict(row)) if row else None


async def crm_field_directions(db: Executor, connection_id: str) -> list[tuple[str, dict[int, Any]]]:
    """Directions whose levels come from this CRM connection: (id, {level: its configured fields})."""
    rows = await db.fetch(
        """SELECT id, capi_interest_fields, capi_qualified_fields, capi_scheduled_fields
           FROM account_directions
           WHERE capi_source = 'crm' AND capi_crm_connection_id = $1
           ORDER BY id""",
        connection_id,
    )
    return [(r["id"], {1: r["capi_interest_fields"], 2: r["capi_qualified_fields"], 3: r["capi_scheduled_fields"]})
            for r in rows]


async def account_regions(db: Executor, account_id: str | None = None) -> list[tuple[str, str]]:
    """(account, default_region) of one account, or of every account by id."""
    rows = await db.fetch(
        "SELECT id, default_region FROM user_accounts WHERE $1::text IS NULL OR id = $1 ORDER BY id", account_id)
    return [(r["id"], r["default_region"]) for r in rows]


async def direction_name(db: Executor, direction_id: str) -> asyncpg.Record | None:
    """The direction's id and name; None: no such direction."""
    return await db.fetchrow("SELECT id, name FROM account_directions WHERE id = $1", direction_id)


async def save_qualification_prompt(db: Executor, direction_id: str, prompt: str) -> None:
    await db.execute(
        "UPDATE account_directions SET qualification_prompt = $2, updated_at = now() WHERE id = $1",
        direction_id, prompt)


async def direction_setups(db: Executor) -> list[asyncpg.Record]:
    """Every direction (`d.*`) with its account's and ad account's tokens, the owner of its ad
    account, the token the sender uses and the names of levels 1..3 (`qualibot doctor`)."""
    rows: list[asyncpg.Record] = await db.fetch(
        """SELECT d.*, a.access_token AS account_token, ad.access_token AS ad_token, ad.account_id AS ad_account_owner,
                  capi_meta_token(ad.access_token, a.access_token) AS chosen_token,
                  ARRAY[capi_event_name(d.capi_event_names, 1), capi_event_name(d.capi_event_names, 2),
                        capi_event_name(d.capi_event_names, 3)] AS names_used
           FROM account_directions d
           JOIN user_accounts a ON a.id = d.account_id
           LEFT JOIN ad_accounts ad ON ad.id = d.ad_account_id
           ORDER BY d.id""")
    return rows


async def account_list(db: Executor) -> list[tuple[str, str]]:
    """Every account: (id, name), by id."""
    return [(r["id"], r["name"]) for r in await db.fetch("SELECT id, name FROM user_accounts ORDER BY id")]


async def directions_of(db: Executor, account: str | None) -> list[tuple[str, str, str]]:
    """(id, name, account id) of the account's directions, or of every account's (None), by id."""
    rows = await db.fetch(
        "SELECT id, name, account_id FROM account_directions WHERE $1::text IS NULL OR account_id = $1 ORDER BY id",
        account)
    return [(r["id"], r["name"], r["account_id"]) for r in rows]
