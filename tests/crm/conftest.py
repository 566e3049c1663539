"""The CRM stack for end-to-end tests: fake amoCRM, Bitrix24 and Graph, and the app with workers.

`launch(...)` seeds the standard tenant with its direction reading levels from a CRM connection
(fields per level as given), starts the app with workers against the fakes and returns a `Stack`.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from core.settings import Settings
from qualibot.app import create_app
from tests.fakes.amocrm import FakeAmoCRM
from tests.fakes.bitrix24 import FakeBitrix24
from tests.fakes.graph import FakeGraph
from tests.helpers import running, wait_for
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, seed, tenant_config

Fields = Sequence[dict[str, Any]]
Configure = Callable[[dict[str, Any]], None]


@dataclass
class Stack:
    url: str
    session: aiohttp.ClientSession
    db: asyncpg.Pool
    amo: FakeAmoCRM
    b24: FakeBitrix24
    graph: FakeGraph

    async def post(self, path: str, data: bytes | str) -> tuple[int, dict[str, Any]]:
        raw = data.encode() if isinstance(data, str) else data
        async with self.session.post(self.url + path, data=raw,
                                     headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            return resp.status, await resp.json()

    async def log_rows(self, crm_entity: str | None = None, *, count: int = 1,
                       status: str | None = None) -> list[asyncpg.Record]:
        """Wait for `count` capi_events_log rows (of `crm_entity`, in `status`), ordered by level."""

        async def probe() -> list[asyncpg.Record]:
            rows = await self.db.fetch(
                """SELECT * FROM capi_events_log
                   WHERE ($1::text IS NULL OR crm_entity = $1) AND ($2::text IS NULL OR status = $2)
                   ORDER BY dialog_analysis_id NULLS LAST, event_level""",
                crm_entity, status,
            )
            return rows if len(rows) >= count else []

        return await wait_for(probe, what=f"{count} {status or ''} capi_events_log rows for {crm_entity}")

    async def sent_events(self, count: int) -> list[dict[str, Any]]:
        """Wait until the fake Graph has accepted `count` events; returns them by event_time/name."""

        async def probe() -> list[dict[str, Any]]:
            events = [e for r in self.graph.requests if r.get("status") == 200 for e in r.get("events", [])]
            return events if len(events) >= count else []

        return await wait_for(probe, what=f"{count} events at the fake Graph")

    async def jobs_done(self) -> None:
        """Wait until no CRM sync is queued or running."""

        async def probe() -> bool:
            return not await self.db.fetchval("SELECT count(*) FROM jobs WHERE name = 'crm.sync'")

        await wait_for(probe, what="the CRM sync jobs to finish")


async def whatsapp_dialog(db: asyncpg.Pool, phone: str = "79161234567", *, clid: str | None = "ARAkLk-click-1",
                          direction: str | None = "implants") -> int:
    """A WhatsApp lead and its dialog, as the Evolution intake stores them; returns the dialog id."""
    async with db.acquire() as conn, conn.transaction():
        lead_id = await conn.fetchval(
            """INSERT INTO leads (account_id, instance_name, phone, ctwa_clid, direction_id)
               VALUES ('clinic', 'clinic-main', $1, $2, $3) RETURNING id""", phone, clid, direction,
        )
        dialog_id: int = await conn.fetchval(
            """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id)
               VALUES ('clinic', 'clinic-main', $1, $2, $3) RETURNING id""", phone, lead_id, direction,
        )
    return dialog_id


Launch = Callable[..., Awaitable[Stack]]


@pytest.fixture
async def launch(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> AsyncIterator[Launch]:
    async with AsyncExitStack() as stack:
        amo, b24 = FakeAmoCRM(), FakeBitrix24()
        graph = FakeGraph(tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID})
        for fake in (amo, b24, graph):
            await fake.start()
            stack.push_async_callback(fake.stop)

        async def start(*, connection: str = "amo-main", interest: Fields = (), qualified: Fields = (),
                        scheduled: Fields = (), amo_rate: float | None = None, configure: Configure | None = None,
                        **overrides: Any) -> Stack:
            cfg = tenant_config(amocrm_url=amo.url, bitrix_url=b24.rest_url, capi_source="crm",
                                crm_connection=connection)
            account = cfg["accounts"][0]
            account["directions"][0]["capi"].update(
                interest_fields=list(interest), qualified_fields=list(qualified), scheduled_fields=list(scheduled))
            if amo_rate is not None:
                account["crm_connections"][0]["rate_limit_per_second"] = amo_rate
            if configure is not None:
                configure(cfg)
            await seed(db, cfg)
            values: dict[str, Any] = {
                "meta_graph_url": graph.url, "crm_sync_delay_seconds": 0.05, "crm_retry_base_seconds": 0.1,
                "capi_retry_base_seconds": 0.05, "capi_retry_max_seconds": 0.2, "meta_timeout_seconds": 2.0,
                "shutdown_grace_seconds": 1.0,
            }
            values.update(overrides)
            app = create_app(make_settings(**values), pool=db, with_workers=True)
            url = await stack.enter_async_context(running(app))
            session = await stack.enter_async_context(aiohttp.ClientSession())
            return Stack(url, session, db, amo, b24, graph)

        yield start
