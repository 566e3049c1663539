"""Who the bot answers and which dialogs the LLM analyses, per direction; `bot resume` (issue 12.7).

Through the real webhook route, drain and worker. Messages: the 2.3.7 text and CTWA fixtures
(real captures, see tests/bot/evolution_keys.py for the key shapes' sources).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg
from prometheus_client import REGISTRY

from core.settings import Settings
from qualibot.app import create_app
from tests.bot.cli import qualibot
from tests.bot.conftest import StartBot, bot_tenant, text_message
from tests.bot.evolution_keys import upsert
from tests.fakes.evolution import FakeEvolution
from tests.fakes.llm import FakeLLM, prompt_text
from tests.helpers import running, wait_for
from tests.seed import WEBHOOK_SECRET, seed

AD_PHONE = "5511988887777"  # the CTWA fixture's chat
PATIENT = "79160000001"


def ad_message(message_id: str, text: str) -> dict[str, Any]:
    return upsert("2.3.7", message_id, text, phone=AD_PHONE, ad=True)


async def configure(db: asyncpg.Pool, evolution_url: str, **direction: str) -> None:
    """Apply the test tenant with these settings on the `implants` direction (`config apply`'s path)."""
    cfg = bot_tenant(evolution_url)
    cfg["accounts"][0]["directions"][0].update(direction)
    await seed(db, cfg)


def replies(outcome: str) -> float:
    return REGISTRY.get_sample_value("qualibot_bot_replies_total", {"outcome": outcome}) or 0.0


async def both_done(bot: Any, db: asyncpg.Pool, n: int = 2) -> bool:
    return len(set(bot.qualified)) >= n and not await db.fetchval("SELECT count(*) FROM jobs WHERE name = 'bot.dialog'")


async def test_reply_to_ad_leads_answers_only_people_who_came_from_an_ad(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    await configure(seeded, fake_evo.url, reply_to="ad_leads")
    before = replies("not_ad_lead")
    async with start_bot() as bot:
        await bot.post(text_message(PATIENT, "Oi, preciso remarcar minha consulta", "3EB0PAT1"))
        await bot.post(ad_message("3A5CAD000001", "Olá! Quero saber mais sobre isso."))
        await wait_for(lambda: both_done(bot, seeded), what="both dialog jobs")
    assert [r["json"]["number"] for r in fake_evo.requests] == [AD_PHONE]
    assert replies("not_ad_lead") == before + 1


async def test_reply_to_off_answers_no_one(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, database_url: str
) -> None:
    await configure(seeded, fake_evo.url, reply_to="off")
    async with start_bot() as bot:
        await bot.post(text_message(PATIENT, "Oi", "3EB0OFF1"))
        await bot.post(ad_message("3A5CAD000002", "Olá!"))
        await wait_for(lambda: both_done(bot, seeded), what="both dialog jobs")
    assert fake_evo.requests == []
    code, exported, _ = await qualibot(database_url, "config", "export")
    assert code == 0 and "reply_to: 'off'" in exported and "analyse: ad_leads" in exported



async def test_bot_resume_ends_an_operator_pause_early(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, database_url: str
) -> None:
    async with start_bot() as bot:
        await bot.post(text_message(AD_PHONE, "Oi, aqui é a Ana", "3EB0OPER1", from_me=True))
        await wait_for(lambda: seeded.fetchval("SELECT bot_paused_until > now() FROM dialog_analysis"),
                       what="the operator's pause")
        # the other form of the same Brazilian number (no ninth digit), as a CRM or a person types it
        code, out, err = await qualibot(database_url, "bot", "resume", "--instance", "clinic-main",
                                        "--phone", "+55 11 8888-7777")
        assert (code, err) == (0, "")
        assert out.startswith("resumed: the bot answers chat") and "7777" not in out  # the phone is masked
        assert await seeded.fetchval("SELECT bot_paused_until FROM dialog_analysis") is None
        await bot.post(text_message(AD_PHONE, "Vocês abrem sábado?", "3EB0AFTER1"))
        await wait_for(lambda: _async(len(fake_evo.requests) == 1), what="the bot's reply after resume")
        code, out, _ = await qualibot(database_url, "bot", "resume", "--instance", "clinic-main",
                                      "--phone", AD_PHONE)
        assert code == 0 and out.startswith("the bot was not paused")


async def test_bot_resume_names_what_it_could_not_find(seeded: asyncpg.Pool, database_url: str) -> None:
    code, _, err = await qualibot(database_url, "bot", "resume", "--instance", "clinic-main",
                                  "--phone", "+7 916 000-00-09")
    assert code == 1 and "no chat with '+7 916 000-00-09' on instance 'clinic-main'" in err
    code, _, err = await qualibot(database_url, "bot", "resume", "--instance", "nope", "--phone", AD_PHONE)
    assert code == 2 and "--instance: no WhatsApp instance 'nope'" in err
    code, _, err = await qualibot(database_url, "bot", "resume", "--instance", "clinic-main", "--phone", "call me")
    assert code == 2 and "--phone: 'call me' is not a phone number" in err


async def _async(value: bool) -> bool:
    return value


async def test_analyse_ad_leads_spends_the_llm_only_on_dialogs_with_a_click_id(
    seeded: asyncpg.Pool, fake_evo: FakeEvolution, make_settings: Callable[..., Settings]
) -> None:
    analysed: list[str] = []

    def model(request: dict[str, Any]) -> str:
        if not request.get("response_format"):
            return "Olá! Como posso ajudar?"
        analysed.append(prompt_text(request))
        return json.dumps({"is_interested": True, "is_qualified": False, "is_scheduled": False,
                           "evidence_message_ids": [], "reasoning": "asking"})

    async with FakeLLM(model) as llm:
        settings = make_settings(openai_api_key="k", openai_base_url=llm.base_url)
        async with running(create_app(settings, pool=seeded, with_workers=True)) as url, \
                aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:

            async def post(body: dict[str, Any]) -> None:
                async with http.post(f"{url}/webhooks/evolution", json=body) as resp:
                    assert resp.status == 200

            async def settled(n: int) -> bool:
                return (await seeded.fetchval("SELECT count(*) FROM dialog_analysis WHERE is_interested") == n
                        and not await seeded.fetchval("SELECT count(*) FROM jobs WHERE name <> 'capi.send'"))

            for i, text in enumerate(["Olá! Vi o anúncio", "Quanto custa o implante AD?"]):
                await post(ad_message(f"3A5CAN{i:06d}", text))
                await post(text_message(PATIENT, f"Remarcar consulta PATIENT {i}", f"3EB0ANP{i}"))
            await wait_for(lambda: settled(2), timeout=15, what="both dialogs at level 1, their jobs done")
            assert len(analysed) == 1 and "implante AD" in analysed[0]  # the patient's dialog cost nothing
            await configure(seeded, fake_evo.url, analyse="all")
            for i in range(2):
                await post(text_message("79160000002", f"Outro paciente OTHER {i}", f"3EB0ANO{i}"))
            await wait_for(lambda: settled(3), timeout=15, what="the third dialog")
            await wait_for(lambda: _async(len(analysed) == 2), what="the third dialog's analysis")
    assert "Outro paciente OTHER" in analysed[1]
