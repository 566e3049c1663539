"""No silent loss (issue 12.8) and click-id drift (issue 12.9), through the real app, worker and CLI.

Messages: the 2.3.7 text and CTWA fixtures (real captures; evolution-api.md §2 A and §3).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from core.settings import Settings
from qualibot.app import create_app
from tests.bot.cli import qualibot
from tests.bot.conftest import bot_tenant, text_message
from tests.bot.evolution_keys import upsert
from tests.fakes.evolution import FakeEvolution
from tests.helpers import running, wait_for
from tests.seed import WEBHOOK_SECRET, seed

METRIC = "qualibot_new_chats_with_referral_ratio"



def ad_message(message_id: str, phone: str, ad_id: str | None = None) -> dict[str, Any]:
    return upsert("2.3.7", message_id, "Olá! Quero saber mais sobre isso.", phone=phone, ad=True, ad_id=ad_id)


async def post_all(url: str, bodies: list[dict[str, Any]]) -> None:
    async with aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
        for body in bodies:
            async with http.post(f"{url}/webhooks/evolution", json=body) as resp:
                assert resp.status == 200


async def test_a_dialog_of_no_direction_gets_a_skipped_row_naming_the_instance_and_doctor_says_so(
    db: asyncpg.Pool, fake_evo: FakeEvolution, make_settings: Callable[..., Settings], database_url: str
) -> None:
    cfg = bot_tenant(fake_evo.url)
    for instance in cfg["accounts"][0]["whatsapp_instances"]:
        instance.pop("default_direction")
    await seed(db, cfg)
    async with running(create_app(make_settings(), pool=db, with_workers=True)) as url:
        await post_all(url, [
            ad_message("3A5CNODIR001", "5511988887777", ad_id="999000111"),  # an ad no direction lists
            text_message("5511988887777", "Quero saber o preço", "3EB0NODIR02"),
        ])

        async def skipped() -> asyncpg.Record | None:
            return await db.fetchrow("SELECT * FROM capi_events_log WHERE status = 'skipped'")

        row = await wait_for(skipped, timeout=15, what="the skipped row")
    assert (row["event_level"], row["direction_id"]) == (1, None)
    assert "WhatsApp instance 'clinic-main' has no default_direction" in row["error"]
    assert "its ad 999000111 is in no direction's ad_ids" in row["error"]
    code, out, _ = await qualibot(database_url, "doctor")
    assert code == 1
    [line] = [x for x in out.splitlines() if "WhatsApp instance clinic-main:" in x]
    assert line.startswith("ERROR ") and "clinic-main: 1 dialog(s) belong to no direction" in line


async def test_an_instance_whose_new_chats_stop_bringing_referrals_is_reported_and_measured(
    seeded: asyncpg.Pool, make_settings: Callable[..., Settings], database_url: str
) -> None:
    window = 3
    settings = make_settings(click_id_drift_chats=window)
    async with running(create_app(settings, pool=seeded, with_workers=True)) as url, aiohttp.ClientSession() as http:

        async def share() -> float | None:
            async with http.get(f"{url}/metrics") as resp:
                for line in (await resp.text()).splitlines():
                    if line.startswith(f'{METRIC}{{instance="clinic-main"}}'):
                        return float(line.split()[-1])
            return None

        async def leads(n: int) -> bool:
            return bool(await seeded.fetchval("SELECT count(*) FROM leads") == n)

        await post_all(url, [ad_message("3A5CDRIFT000", "5511900000000")])
        await wait_for(lambda: leads(1), what="the ad chat's lead")
        assert await share() == 1.0
        _, out, _ = await qualibot(database_url, "doctor", QUALIBOT_CLICK_ID_DRIFT_CHATS=str(window))
        assert "new chats arrived with an ad referral" not in out
        # then chats keep coming, and none brings ad data (Evolution 2.4 drops a text's ad context)
        await post_all(url, [text_message(f"551190000000{i}", "Olá! Quero saber mais sobre isso.", f"3EB0DRIFT{i}")
                             for i in range(1, window + 1)])
        await wait_for(lambda: leads(window + 1), what="the new chats' leads")
        assert await share() == 0.0
    _, out, _ = await qualibot(database_url, "doctor", QUALIBOT_CLICK_ID_DRIFT_CHATS=str(window))
    [line] = [x for x in out.splitlines() if "WhatsApp instance clinic-main:" in x]
    assert line.startswith("WARN ") and (f"clinic-main: none of its last {window} new chats arrived with an "
                                         "ad referral (click id), though earlier chats did") in line
    assert "clinic-cloud: none of" not in out  # an instance that never had ad chats is not drifting
