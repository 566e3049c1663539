"""One WhatsApp dialog through the whole app — webhook, reply, analysis, Meta — and what /metrics shows."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from core.settings import Settings
from qualibot.app import create_app
from tests.fakes.evolution import FakeEvolution
from tests.fakes.graph import FakeGraph
from tests.fakes.llm import FakeLLM
from tests.helpers import running, wait_for
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WEBHOOK_SECRET, seed, tenant_config

PHONE = "79161230000"
CLICK_ID = "ARAkLk-e2e-click"


def upsert(text: str, message_id: str, *, ad: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": False, "id": message_id},
        "pushName": "Client", "message": {"conversation": text}, "messageType": "conversation",
        "messageTimestamp": int(time.time()),
    }
    if ad:
        data["contextInfo"] = {"externalAdReply": {"sourceType": "ad", "sourceId": "120239177205810192",
                                                   "sourceUrl": "https://fb.me/x", "ctwaClid": CLICK_ID}}
    return {"event": "messages.upsert", "instance": "clinic-main", "data": data}


def model(request: dict[str, Any]) -> str:
    """Replies to chat turns; for an analysis, cites the client's messages that mention a booking."""
    if not request.get("response_format"):
        return "Which day suits you?"
    lines = [json.loads(line) for m in request["messages"] for line in str(m["content"]).splitlines()
             if line.startswith("{") and '"role"' in line]
    booked = [m["id"] for m in lines if m["role"] == "client" and re.search(r"book", m["text"])]
    return json.dumps({"is_interested": True, "is_qualified": bool(booked), "is_scheduled": bool(booked),
                       "evidence_message_ids": booked, "reasoning": "booking confirmed"})


async def test_an_ad_dialog_is_answered_qualified_and_reported_once(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    async with FakeEvolution() as evolution, FakeLLM(model) as llm, FakeGraph(
        tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}
    ) as graph:
        await seed(db, tenant_config(evolution_url=evolution.url))
        settings = make_settings(openai_api_key="k", openai_base_url=llm.base_url, meta_graph_url=graph.url)
        async with running(create_app(settings, pool=db, with_workers=True)) as url, \
                aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
            for n, (text, ad) in enumerate([("Hi, about implants", True), ("Tuesday 10:00, please book me", False)]):
                async with http.post(f"{url}/webhooks/evolution", json=upsert(text, f"E2E{n}", ad=ad)) as resp:
                    assert resp.status == 200
                await wait_for(lambda n=n: _async(len(evolution.texts()) > n), timeout=15, what="the bot's reply")

            async def three_sent() -> bool:
                n = await db.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'")
                return bool(n == 3)

            await wait_for(three_sent, timeout=20, what="three events delivered")
            async with http.get(f"{url}/metrics") as resp:
                metrics = await resp.text()
    flags = await db.fetchrow("SELECT * FROM dialog_analysis WHERE contact_phone = $1", PHONE)
    assert flags["capi_interest_sent"] and flags["capi_qualified_sent"] and flags["capi_scheduled_sent"]
    sent = graph.events_sent()
    assert sorted(e["event_name"] for e in sent) == ["InitiateCheckout", "LeadSubmitted", "QualifiedLead"]
    assert all(e["user_data"]["ctwa_clid"] == CLICK_ID for e in sent)
    assert all(count == 1 for count in graph.delivered.values())
    for name in ('qualibot_webhooks_total{result="stored",source="evolution"}',
                 'qualibot_capi_events_total{event_name="InitiateCheckout",status="success"}',
                 "qualibot_llm_calls_total", "qualibot_llm_tokens_total",
                 "qualibot_meta_request_seconds_bucket", 'qualibot_jobs{state="queued"}'):
        assert name in metrics, name


async def _async(value: bool) -> bool:
    return value
