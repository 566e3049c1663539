"""A chat first seen as `<lid>@lid` and later with its phone is one person (issue 12.5).

End to end: the real webhook route, the drain, the worker's dialog and qualification jobs and the
CAPI sender, against a fake Meta. Keys as each Evolution version sends them: tests/bot/evolution_keys.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest

from core.settings import Settings
from qualibot.app import create_app
from tests.bot.evolution_keys import LID, click_id, upsert
from tests.fakes.graph import FakeGraph
from tests.helpers import running, wait_for
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WEBHOOK_SECRET

PHONE = "5511988887777"


@dataclass
class App:
    url: str
    http: aiohttp.ClientSession
    db: asyncpg.Pool
    graph: FakeGraph

    async def post(self, body: dict[str, Any]) -> None:
        async with self.http.post(f"{self.url}/webhooks/evolution", json=body,
                                  headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as resp:
            assert resp.status == 200, await resp.text()

    async def rows(self, sql: str, *args: Any, count: int, what: str) -> list[asyncpg.Record]:
        async def probe() -> tuple[list[asyncpg.Record]] | None:
            found = await self.db.fetch(sql, *args)
            return (found,) if len(found) == count else None  # a tuple: truthy even for no rows
        return (await wait_for(probe, timeout=15, what=what))[0]


@pytest.fixture
def app(seeded: asyncpg.Pool, make_settings: Callable[..., Settings]) -> Callable[[], Any]:
    """The whole app with every job (no LLM: level 1 is a count) and a fake Meta."""

    @asynccontextmanager
    async def start() -> AsyncIterator[App]:
        async with FakeGraph(tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}) as graph:
            settings = make_settings(meta_graph_url=graph.url, capi_retry_base_seconds=0.05,
                                     capi_retry_max_seconds=0.2, shutdown_grace_seconds=1.0)
            async with running(create_app(settings, pool=seeded, with_workers=True)) as url, \
                    aiohttp.ClientSession() as http:
                yield App(url, http, seeded, graph)

    return start


SUCCESS = "SELECT * FROM capi_events_log WHERE status = 'success'"


@pytest.mark.parametrize("shape", ["2.3.3", "2.3.6", "2.4.0-rc2"])
async def test_a_lid_chat_with_a_click_id_then_its_phone_is_one_dialog_with_one_lead_event(
    app: Callable[[], Any], shape: str
) -> None:
    async with app() as a:
        await a.post(upsert("lid-only", "3EB0LID0001", "Olá! Quero saber mais", phone=PHONE, ad=True))
        await a.rows("SELECT * FROM leads WHERE is_lid AND ctwa_clid IS NOT NULL", count=1,
                     what="the LID chat's lead with its click id")
        await a.post(upsert(shape, "3EB0PHONE001", "Quanto custa?", phone=PHONE))
        [event] = await a.rows(SUCCESS, count=1, what="the Lead event delivered")
        # a later message that comes with the LID only joins the phone's dialog
        await a.post(upsert("lid-only", "3EB0LID0002", "Pode ser amanhã?", phone=PHONE))
        await a.rows("SELECT * FROM messages WHERE dialog_id IS NOT NULL", count=3, what="three linked messages")
        await a.rows("SELECT * FROM jobs WHERE name = 'bot.dialog'", count=0, what="the dialog jobs to finish")
    lead = await a.db.fetchrow("SELECT * FROM leads")
    assert await a.db.fetchval("SELECT count(*) FROM leads") == 1
    assert (lead["phone"], lead["is_lid"], lead["ctwa_clid"]) == (PHONE, False, click_id())
    dialog = await a.db.fetchrow("SELECT * FROM dialog_analysis")
    assert await a.db.fetchval("SELECT count(*) FROM dialog_analysis") == 1
    assert (dialog["contact_phone"], dialog["client_message_count"]) == (PHONE, 3)
    assert dialog["is_interested"] and dialog["capi_interest_sent"]
    assert dialog["capi_interest_event_id"] == event["event_id"]
    assert await a.db.fetchval("SELECT count(*) FROM messages WHERE dialog_id <> $1", dialog["id"]) == 0
    assert await a.db.fetchval("SELECT phone FROM whatsapp_lids WHERE lid = $1", LID) == PHONE
    sent = a.graph.events_sent()
    assert [(e["event_name"], e["user_data"]["ctwa_clid"]) for e in sent] == [("LeadSubmitted", click_id())]
    assert a.graph.duplicates() == {}
    assert await a.db.fetchval("SELECT count(*) FROM capi_events_log") == 1


async def test_a_lid_dialog_and_a_phone_dialog_merge_keeping_each_level_once(app: Callable[[], Any]) -> None:
    async with app() as a:
        # Evolution 2.3.7 sends the LID alone when Baileys has no phone, and the phone alone when it has
        await a.post(upsert("lid-only", "3EB0LIDA01", "Olá!", phone=PHONE, ad=True))
        await a.post(upsert("lid-only", "3EB0LIDA02", "Quero agendar", phone=PHONE))
        await a.rows(SUCCESS, count=1, what="the LID dialog's Lead delivered")
        await a.post(upsert("2.3.7", "3EB0PNA01", "Oi, sou eu de novo", phone=PHONE))
        await a.post(upsert("2.3.7", "3EB0PNA02", "Pelo outro aparelho", phone=PHONE))
        await a.rows("SELECT * FROM capi_events_log WHERE status = 'skipped'", count=1,
                     what="the phone dialog's level 1, skipped without a click id")
        assert await a.db.fetchval("SELECT count(*) FROM dialog_analysis") == 2
        # Evolution 2.4.0-rc2 then names both: they are one person
        await a.post(upsert("2.4.0-rc2", "3EB0PNA03", "Então, amanhã?", phone=PHONE))
        [dialog] = await a.rows("SELECT * FROM dialog_analysis", count=1, what="the two dialogs merged")
        await a.rows("SELECT * FROM jobs WHERE name IN ('bot.dialog', 'qualification.dialog')", count=0,
                     what="the merged dialog's jobs to finish")
    assert (dialog["contact_phone"], dialog["client_message_count"]) == (PHONE, 5)
    assert await a.db.fetchval("SELECT count(*) FROM messages WHERE dialog_id = $1", dialog["id"]) == 5
    assert await a.db.fetchval("SELECT ctwa_clid FROM leads WHERE phone = $1", PHONE) == click_id()
    assert await a.db.fetchval("SELECT count(*) FROM leads") == 1
    rows = await a.db.fetch("SELECT * FROM capi_events_log ORDER BY id")
    kept = [r for r in rows if r["dialog_analysis_id"] == dialog["id"]]
    assert [(r["event_level"], r["status"]) for r in kept] == [(1, "success")]
    [dropped] = [r for r in rows if r["dialog_analysis_id"] is None]
    assert dropped["status"] == "skipped" and dropped["error"].startswith("merged:")
    assert kept[0]["event_id"] in dropped["error"]
    flags = await a.db.fetchrow("SELECT * FROM dialog_analysis")
    assert flags["capi_interest_sent"] and flags["capi_interest_event_id"] == kept[0]["event_id"]
    assert [e["event_name"] for e in a.graph.events_sent()] == ["LeadSubmitted"]
