from __future__ import annotations

import asyncpg

from tests.seed import seed


async def test_seeded_tenant_is_readable(db: asyncpg.Pool) -> None:
    await seed(db)
    row = await db.fetchrow("SELECT * FROM account_directions WHERE id = 'implants'")
    assert row["capi_enabled"] is True and row["pixel_id"] == "1234567890"
    assert row["capi_event_names"] == {"1": "LeadSubmitted", "2": "QualifiedLead", "3": "InitiateCheckout"}
