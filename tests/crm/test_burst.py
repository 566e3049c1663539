"""100 amoCRM webhooks at once: every answer within amoCRM's 2 s, and the CRM never over its rate."""

from __future__ import annotations

import asyncio
from collections import Counter

import aiohttp

from tests.crm.conftest import Launch, Stack, whatsapp_dialog
from tests.crm.support import amo_path
from tests.fakes.amocrm import custom_field

LEADS = 12  # 100 webhooks, 8 or 9 per lead: the bursts coalesce into one read per lead
AMO_TIMEOUT = aiohttp.ClientTimeout(total=2.0)  # amoCRM gives up on a hook after 2 s


async def test_hundred_webhooks_at_once(launch: Launch) -> None:
    stack: Stack = await launch(interest=[{"field_id": "93713", "enum_id": "45997"}], crm_sync_delay_seconds=1.0)
    interested = custom_field(93713, "select", {"value": "Заинтересован", "enum_id": 45997, "enum_code": None})
    for n in range(LEADS):
        stack.amo.add_lead(2000 + n, fields=[interested], contact_id=3000 + n)
        stack.amo.add_contact(3000 + n, f"+7 916 200-00-{n:02d}")
        await whatsapp_dialog(stack.db, f"79162000{n:03d}"[:11], clid=f"click-{n}")

    async def hook(i: int, session: aiohttp.ClientSession) -> tuple[int, str]:
        lead = 2000 + i % LEADS
        form = (f"leads[update][0][id]={lead}&leads[update][0][status_id]=53861255"
                "&account[subdomain]=clinic&account[id]=17769199")
        async with session.post(stack.url + amo_path(), data=form.encode(), timeout=AMO_TIMEOUT,
                                headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            return resp.status, await resp.text()

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=100)) as session:
        answers = await asyncio.gather(*(hook(i, session) for i in range(100)))  # a timeout would raise
    assert [a for a in answers if a[0] != 200] == []
    assert await stack.db.fetchval("SELECT count(*) FROM webhook_events") == 100

    rows = await stack.log_rows(count=LEADS, status="success")
    assert len({r["dialog_analysis_id"] for r in rows}) == LEADS
    assert len(await stack.sent_events(LEADS)) == LEADS
    reads = Counter(r["path"] for r in stack.amo.requests if r["path"].startswith("/api/v4/leads/"))
    assert len(reads) == LEADS and max(reads.values()) <= 2  # coalesced: not 5 reads per lead
    assert stack.amo.throttled == 0
    assert stack.amo.window_max() <= 7  # amoCRM's 7 requests/s, across all concurrent sync jobs
