"""Fair claiming through the real app and worker: one tenant's CRM flood does not hold up another
tenant's WhatsApp reply (issue 15: it used to, from 2.3 s to over 45 s)."""

from __future__ import annotations

import asyncio
import copy
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import asyncpg
from aiohttp import web

from core.settings import Settings
from crm.jobs import schedule_sync
from qualibot.app import create_app
from tests.fakes.evolution import FakeEvolution
from tests.fakes.evolution_webhook import client_message
from tests.fakes.llm import FakeLLM
from tests.helpers import running, wait_for
from tests.seed import META_TOKEN, WEBHOOK_SECRET, seed, tenant_config

FLOOD = 3000
BUFFER = 1.0


@asynccontextmanager
async def hanging_crm() -> AsyncIterator[list[str]]:
    """A CRM that is down the slow way: it accepts every request and never answers (until the end)."""
    seen: list[str] = []
    release = asyncio.Event()

    async def hang(request: web.Request) -> web.Response:
        seen.append(request.path)
        await release.wait()
        return web.Response(status=503)

    app = web.Application()
    app.router.add_get("/{tail:.*}", hang)
    async with running(app) as url:
        seen.append(url)
        try:
            yield seen
        finally:
            release.set()


def two_tenants(evolution_url: str, crm_url: str) -> dict[str, Any]:
    """The standard clinic (WhatsApp), and a second account, a lab, whose levels come from its amoCRM."""
    cfg = tenant_config(evolution_url=evolution_url)
    direction = copy.deepcopy(cfg["accounts"][0]["directions"][0])
    direction.update(id="lab-tests", name="Lab tests", ad_account="act_2002", ad_ids=[])
    direction["capi"].update(source="crm", crm_connection="amo-lab",
                             interest_fields=[{"field_id": "93713", "field_type": "select", "enum_id": "45997"}])
    cfg["accounts"].append({
        "id": "lab", "name": "Lab", "default_region": "RU",
        "ad_accounts": [{"id": "act_2002", "access_token": META_TOKEN}],
        "crm_connections": [{"id": "amo-lab", "type": "amocrm", "base_url": crm_url,
                             "access_token": "lab-long-lived-token", "account_id": "424242",
                             "subdomain": "lab", "webhook_secret": "lab-webhook-secret-0123456789abcdef"}],
        "directions": [direction],
    })
    return cfg


async def _replied(evolution: FakeEvolution) -> bool:
    return bool(evolution.requests)


async def test_a_crm_flood_of_one_tenant_leaves_room_for_another_tenants_reply(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    async with hanging_crm() as crm, FakeEvolution() as evolution, FakeLLM(lambda _r: "Olá! Como posso ajudar?") as llm:
        crm_url = crm.pop(0)
        await seed(db, two_tenants(evolution.url, crm_url))
        settings = make_settings(openai_api_key="k", openai_base_url=llm.base_url, buffer_seconds=BUFFER,
                                 crm_timeout_seconds=300, shutdown_grace_seconds=0.5)
        async with db.acquire() as conn, conn.transaction():
            for i in range(FLOOD):  # a CRM webhook carrying 3,000 entities, as crm.webhooks queues them
                await schedule_sync(conn, "amo-lab", "lead", str(1_000_000 + i), delay=0)
        async with running(create_app(settings, pool=db, with_workers=True)) as url, \
                aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:

            async def flooded() -> bool:
                return bool(crm) and bool(await db.fetchval(
                    "SELECT count(*) >= 3 FROM jobs WHERE name = 'crm.sync' AND status = 'running'"))

            await wait_for(flooded, what="the CRM syncs to hold worker slots, hanging")
            for n, text in enumerate(("Oi", "Quero um implante")):
                async with http.post(f"{url}/webhooks/evolution",
                                     json=client_message("5511987654321", text, f"3EB0FAIR{n}")) as resp:
                    assert resp.status == 200
            # the buffer, then the reply: a few seconds, not a turn after 3,000 CRM reads
            await wait_for(lambda: _replied(evolution), timeout=BUFFER + 5, what="the clinic's reply")
        assert evolution.requests[0]["json"]["text"] == "Olá! Como posso ajudar?"
        assert await db.fetchval("SELECT count(*) FROM jobs WHERE name = 'crm.sync'") == FLOOD  # none lost
