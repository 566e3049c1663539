"""CRM connections and the directions that take their levels from them, as read from the database."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from capi import tenants
from core.jobs import Executor

AMOCRM_DEFAULT_RATE = 7.0  # requests/s per integration (amoCRM API recommendations)
BITRIX24_DEFAULT_RATE = 2.0  # requests/s drained per portal on non-Enterprise plans


@dataclass(frozen=True)
class Connection:
    id: str
    type: str  # amocrm | bitrix24
    account_id: str
    default_region: str
    base_url: str | None
    rest_url: str | None
    access_token: str | None
    crm_account_id: str | None
    subdomain: str | None
    webhook_secret: str | None
    application_token: str | None
    rate_limit_per_second: float | None

    @property
    def rate(self) -> float:
        if self.rate_limit_per_second and self.rate_limit_per_second > 0:
            return float(self.rate_limit_per_second)
        return AMOCRM_DEFAULT_RATE if self.type == "amocrm" else BITRIX24_DEFAULT_RATE


@dataclass(frozen=True)
class CrmDirection:
    """A direction whose levels come from this connection's fields, by level (1, 2, 3)."""

    id: str
    fields: dict[int, list[dict[str, Any]]]


async def load_connection(db: Executor, connection_id: str, crm_type: str | None = None) -> Connection | None:
    row = await db.fetchrow(
        """SELECT id, type, account_id, base_url, rest_url, access_token, crm_account_id, subdomain,
                  webhook_secret, application_token, rate_limit_per_second
           FROM crm_connections WHERE id = $1 AND ($2::text IS NULL OR type = $2)""",
        connection_id, crm_type,
    )
    if row is None:
        return None
    region = await tenants.default_region(db, row["account_id"])
    if region is None:
        return None  # its account is gone (the connection is deleted with it)
    return Connection(**dict(row), default_region=region)


async def crm_directions(db: Executor, connection_id: str) -> list[CrmDirection]:
    """Directions with `capi_source = crm` on this connection (CAPI on or off: the door records
    a disabled direction's decisions as skipped, so the audit shows why nothing was sent)."""
    return [
        CrmDirection(id=direction_id, fields={level: _field_list(value) for level, value in fields.items()})
        for direction_id, fields in await tenants.crm_field_directions(db, connection_id)
    ]


def _field_list(value: Any) -> list[dict[str, Any]]:
    return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []


async def connection_ids_of_accounts(db: Executor, accounts: Sequence[str]) -> list[str]:
    rows = await db.fetch("SELECT id FROM crm_connections WHERE account_id = ANY($1::text[])", list(accounts))
    return [r["id"] for r in rows]


async def all_connections(db: Executor) -> dict[str, Connection]:
    """Every connection by id (`qualibot doctor`); `default_region` is not read here and left empty."""
    rows = await db.fetch(
        """SELECT id, type, account_id, base_url, rest_url, access_token, crm_account_id, subdomain,
                  webhook_secret, application_token, rate_limit_per_second FROM crm_connections""")
    return {r["id"]: Connection(**dict(r), default_region="") for r in rows}
