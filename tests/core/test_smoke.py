from __future__ import annotations

import asyncpg


async def test_schema_is_applied(db: asyncpg.Pool) -> None:
    names = {r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname='public'")}
    assert {"capi_events_log", "dialog_analysis", "leads", "jobs", "account_directions"} <= names
