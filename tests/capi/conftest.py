"""Fixtures for the CAPI tests: the fake Graph API, settings pointed at it, dialogs written with SQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import aiohttp
import asyncpg
import pytest

from capi.outbox import Outbox
from capi.record import record_event
from core.settings import Settings
from qualibot.cli import main
from qualification.dialogs import mark_sent
from qualification.door import dialog_contact
from tests.fakes.graph import FakeGraph
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, seed


@pytest.fixture
async def graph() -> AsyncIterator[FakeGraph]:
    fake = FakeGraph(tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID})
    fake.timeout_sleep = 1.0
    async with fake:
        yield fake


@pytest.fixture
def settings(make_settings: Callable[..., Settings], graph: FakeGraph) -> Settings:
    # one lane: a run's requests are countable; the concurrency tests ask for more lanes
    return make_settings(
        meta_graph_url=graph.url, meta_timeout_seconds=3.0, capi_retry_base_seconds=0.05,
        capi_retry_max_seconds=0.2, capi_throttle_seconds=0.1, capi_lease_seconds=30.0, capi_concurrency=1,
    )


@pytest.fixture
def qualibot(database_url: str, monkeypatch: pytest.MonkeyPatch) -> Callable[..., Awaitable[int]]:
    """The CLI, in-process, on this run's database: `await qualibot("capi", "retry")` → exit code."""
    monkeypatch.setenv("DATABASE_URL", database_url)

    async def run(*args: str) -> int:
        return await asyncio.to_thread(main, list(args))

    return run


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
async def seeded(db: asyncpg.Pool) -> asyncpg.Pool:
    await seed(db)
    return db


@pytest.fixture
def outbox(seeded: asyncpg.Pool, http: aiohttp.ClientSession, settings: Settings) -> Callable[..., Outbox]:
    """A fresh sender run (optionally with other settings)."""

    def make(**overrides: Any) -> Outbox:
        return Outbox(seeded, http, settings.model_copy(update=overrides), mark_sent)

    return make


_counter = iter(range(1, 10**9))


async def make_dialog(
    db: asyncpg.Pool, *, clid: str | None = "ARAkLk-click-1", phone: str | None = None,
    direction: str | None = "implants", email: str | None = None,
) -> int:
    """A lead and its dialog, as the WhatsApp intake would have stored them; returns the dialog id."""
    n = next(_counter)
    phone = phone or f"7916{n:07d}"
    async with db.acquire() as conn, conn.transaction():
        lead_id = await conn.fetchval(
            """INSERT INTO leads (account_id, instance_name, phone, email, direction_id, ctwa_clid)
               VALUES ('clinic', 'clinic-main', $1, $2, $3, $4) RETURNING id""",
            phone, email, direction, clid,
        )
        dialog_id: int = await conn.fetchval(
            """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id)
               VALUES ('clinic', 'clinic-main', $1, $2, $3) RETURNING id""",
            phone, lead_id, direction,
        )
    return dialog_id


async def record(
    db: asyncpg.Pool, dialog_id: int | None, level: int, *, reached_at: datetime | None = None, **kw: Any
) -> str | None:
    async with db.acquire() as conn, conn.transaction():
        return await record_event(
            conn, dialog_id=dialog_id, direction_id=kw.pop("direction_id", None), level=level,
            source=kw.pop("source", "whatsapp"), reached_at=reached_at or datetime.now(UTC),
            contacts=dialog_contact, **kw,
        )


async def log_row(db: asyncpg.Pool, dialog_id: int, level: int) -> asyncpg.Record:
    row = await db.fetchrow(
        "SELECT * FROM capi_events_log WHERE dialog_analysis_id = $1 AND event_level = $2", dialog_id, level
    )
    assert row is not None
    return row
