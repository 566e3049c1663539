"""CRM connections and the directions that take their levels from them, as read from the database."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

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
        """SELECT c.id, c.type, c.account_id, a.default_region, c.base_url, c.rest_url, c.access_token,
                  c.crm_account_id, c.subdomain, c.webhook_secret, c.application_token,
                  c.rate_limit_per_second
           FROM crm_connections c JOIN user_accounts a ON a.id = c.account_id
           WHERE c.id = $1 AND ($2::text IS NULL OR c.type = $2)""",
        connection_id, crm_type,
    )
    return Connection(**dict(row)) if row is not None else None


async def crm_directions(db: Executor, connection_id: str) -> list[CrmDirection]:
    """Directions with `capi_source = crm` on this connection (CAPI on or off: the door records
    a disabled direction's decisions as skipped, so the audit shows why nothing was sent)."""
    rows = await db.fetch(
        """SELECT id, capi_interest_fields, capi_qualified_fields, capi_scheduled_fields
           FROM account_directions
           WHERE capi_source = 'crm' AND capi_crm_connection_id = $1
           ORDER BY id""",
        connection_id,
    )
    return [
        CrmDirection(
            id=r["id"],
            fields={
                1: _field_list(r["capi_interest_fields"]),
                2: _field_list(r["capi_qualified_fields"]),
                3: _field_list(r["capi_scheduled_fields"]),
            },
        )
        for r in rows
    ]


def _field_list(value: Any) -> list[dict[str, Any]]:
    return [f for f in value if isinstance(f, dict)] if isinstance(value, list) else []
