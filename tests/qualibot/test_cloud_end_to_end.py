"""A WhatsApp Cloud API dialog through the whole app: Meta's signed webhook with a referral → dialog →
reply through the fake Graph → levels → CAPI events with the click id and the number's WABA id."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from core.settings import Settings
from qualibot.app import create_app
from tests.fakes.cloud_graph import FakeCloudGraph
from tests.fakes.cloud_webhook import (
    CLOUD_TOKEN,
    NUMBER_ID,
    WABA,
    echo_body,
    fixture_body,
    post,
    text_body,
    with_cloud_number,
)
from tests.fakes.llm import FakeLLM
from tests.helpers import running, wait_for
from tests.qualibot.test_end_to_end import model  # the same model: replies, and levels from booking words
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, seed, tenant_config

PHONE = "16505551234"
CLID = "Aff-n8ZTODiE79d22KtAwQKj9e-e2e"
AD = "120239177205810192"


@asynccontextmanager
async def cloud_stack(db: asyncpg.Pool, make_settings: Callable[..., Settings]
                      ) -> AsyncIterator[tuple[str, aiohttp.ClientSession, FakeCloudGraph]]:
    cfg = with_cloud_number(tenant_config())
    del cfg["accounts"][0]["directions"][0]["whatsapp_business_account_id"]  # taken from the number
    async with FakeLLM(model) as llm, FakeCloudGraph(
        numbers={NUMBER_ID: CLOUD_TOKEN}, tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}
    ) as graph:
        await seed(db, cfg)
        settings = make_settings(openai_api_key="k", openai_base_url=llm.base_url, meta_graph_url=graph.url)
        async with running(create_app(settings, pool=db, with_workers=True)) as url, aiohttp.ClientSession() as http:
            yield url, http, graph  # type: ignore[misc]


async def test_a_cloud_ad_dialog_is_answered_through_graph_and_reported_with_the_numbers_waba(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    async with cloud_stack(db, make_settings) as (url, http, graph):
        for n, (text, clid) in enumerate([("Hi, about implants", CLID), ("Tuesday 10:00, please book me", None)]):
            status, _ = await post(http, url, text_body(PHONE, text, f"wamid.E2E{n}", clid=clid, ad_id=AD))
            assert status == 200
            await wait_for(lambda n=n: _async(len(graph.sent) > n), timeout=15, what="the bot's reply through Graph")

        async def three_sent() -> bool:
            return bool(await db.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'") == 3)

        await wait_for(three_sent, timeout=20, what="three events delivered")
        delivered = fixture_body("status-delivered.json")
        delivered["entry"][0]["changes"][0]["value"]["statuses"][0]["id"] = graph.sent[0]["wamid"]
        status, answer = await post(http, url, delivered)
        assert (status, answer["results"][0]["recorded"]) == (200, True)
    reply = graph.sent[0]
    assert (reply["to"], reply["type"], reply["messaging_product"]) == (PHONE, "text", "whatsapp")
    assert reply["text"]["body"] == "Which day suits you?"
    assert reply["authorization"] == f"Bearer {CLOUD_TOKEN}" and reply["phone_number_id"] == NUMBER_ID
    bot = await db.fetch("SELECT * FROM messages WHERE role = 'bot' ORDER BY id")
    assert [(m["delivery_status"], m["external_id"]) for m in bot] == [("sent", s["wamid"]) for s in graph.sent]
    assert bot[0]["peer_status"] == "delivered"
    sent = graph.events_sent()
    assert sorted(e["event_name"] for e in sent) == ["InitiateCheckout", "LeadSubmitted", "QualifiedLead"]
    assert all(e["user_data"]["ctwa_clid"] == CLID for e in sent)
    assert all(e["user_data"]["whatsapp_business_account_id"] == WABA for e in sent)
    assert all(count == 1 for count in graph.delivered.values())


async def test_outside_the_24_hour_window_the_reply_is_recorded_as_not_sent(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    async with cloud_stack(db, make_settings) as (url, http, graph):
        old = time.time() - 25 * 3600  # Meta delivered it late (it retries for days)
        status, _ = await post(http, url, text_body(PHONE, "Hi, about implants", "wamid.OLD", clid=CLID, sent=old))
        assert status == 200

        async def recorded() -> asyncpg.Record | None:
            return await db.fetchrow("SELECT * FROM messages WHERE role = 'bot' AND delivery_status <> 'pending'")

        reply = await wait_for(recorded, timeout=15, what="the reply's record")
    assert reply["delivery_status"] == "failed"
    assert "not sent: outside WhatsApp's 24-hour customer-service window" in reply["delivery_error"]
    assert graph.sent == []


@pytest.mark.parametrize(("fixture", "expected"), [
    ("131047", "re-engagement (131047)"), ("131026", "undeliverable (131026)"),
    ("130429", "throttled (130429)"), ("190", "token (190)"),
])
async def test_graph_errors_are_classified_on_the_reply(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], fixture: str, expected: str
) -> None:
    async with cloud_stack(db, make_settings) as (url, http, graph):
        graph.cloud_script.append(fixture)
        status, _ = await post(http, url, text_body(PHONE, "Hi", "wamid.ERR", clid=CLID))
        assert status == 200

        async def recorded() -> asyncpg.Record | None:
            return await db.fetchrow("SELECT * FROM messages WHERE role = 'bot' AND delivery_status <> 'pending'")

        reply = await wait_for(recorded, timeout=15, what="the reply's record")
    assert reply["delivery_status"] == "failed"
    assert reply["delivery_error"].startswith(expected), reply["delivery_error"]
    assert CLOUD_TOKEN not in reply["delivery_error"]


async def test_a_message_the_business_sent_from_the_whatsapp_business_app_silences_the_bot(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    """Coexistence: an `smb_message_echoes` webhook is the operator taking over; the client's next
    message is stored and counted but not answered."""
    def operator_active() -> float:
        return REGISTRY.get_sample_value("qualibot_bot_replies_total", {"outcome": "operator_active"}) or 0.0

    async with cloud_stack(db, make_settings) as (url, http, graph):
        status, _ = await post(http, url, text_body(PHONE, "Hi, about implants", "wamid.CO1", clid=CLID, ad_id=AD))
        assert status == 200
        await wait_for(lambda: _async(len(graph.sent) == 1), timeout=15, what="the bot's first reply")
        status, answer = await post(http, url, echo_body("+" + PHONE, "Ana from the clinic here!", "wamid.APP1"))
        assert (status, answer["results"][0]["status"]) == (200, "stored")

        async def paused() -> bool:
            return bool(await db.fetchval("SELECT bot_paused_until > now() FROM dialog_analysis"))

        await wait_for(paused, timeout=15, what="the operator's pause")
        before = operator_active()
        status, _ = await post(http, url, text_body(PHONE, "Great, Tuesday then?", "wamid.CO2"))
        assert status == 200

        async def withheld() -> bool:
            return bool(operator_active() > before
                        and not await db.fetchval("SELECT count(*) FROM jobs WHERE name = 'bot.dialog'"))

        await wait_for(withheld, timeout=15, what="the dialog job keeping quiet")
    assert len(graph.sent) == 1  # only the reply before the business wrote from its app
    roles = await db.fetch("SELECT role, text FROM messages ORDER BY id")
    assert [r["role"] for r in roles] == ["client", "bot", "operator", "client"]
    assert roles[2]["text"] == "Ana from the clinic here!"
    assert await db.fetchval("SELECT client_message_count FROM dialog_analysis") == 2


async def _async(value: bool) -> bool:
    return value
