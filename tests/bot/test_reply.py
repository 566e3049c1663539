"""The chatbot after a burst: one reply per burst through Evolution, operator takeover, no LLM, errors."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from bot import jobs as bot_jobs
from tests.bot.conftest import Bot, StartBot, load, text_message
from tests.fakes.evolution import FakeEvolution
from tests.fakes.llm import FakeLLM, prompt_text
from tests.helpers import wait_for

PHONE = "5511988887777"


async def bot_messages(db: asyncpg.Pool) -> list[asyncpg.Record]:
    rows: list[asyncpg.Record] = await db.fetch("SELECT * FROM messages WHERE role = 'bot' ORDER BY id")
    return rows


async def qualified(bot: Bot, n: int = 1) -> list[int]:
    """`n` qualification runs, and every dialog job done (the qualification is queued as the job starts)."""
    return await wait_for(lambda: _ready(bot, n), timeout=10, what=f"{n} qualification run(s)")


async def _ready(bot: Bot, n: int) -> list[int]:
    if len(bot.qualified) < n or await bot.pool.fetchval("SELECT count(*) FROM jobs WHERE name = 'bot.dialog'"):
        return []
    return bot.qualified


async def test_a_burst_of_five_gets_one_reply_and_one_qualification(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, fake_llm: FakeLLM
) -> None:
    texts = ["Oi", "vi o anúncio", "quero um implante", "quanto custa?", "moro em Pinheiros"]
    async with start_bot(buffer_seconds=0.3) as bot:
        for i, text in enumerate(texts):
            assert (await bot.post(text_message(PHONE, text, f"3EB0BURST{i}")))[0] == 200
        runs = await qualified(bot)
        [reply] = await bot_messages(seeded)
    dialog_id = await seeded.fetchval("SELECT id FROM dialog_analysis")
    assert runs == [dialog_id]
    assert len(fake_evo.requests) == 1 and fake_llm.calls == 1
    sent = fake_evo.requests[0]
    assert sent["instance"] == "clinic-main" and sent["headers"]["apikey"] == "instance-api-key"
    assert sent["json"] == {"number": PHONE, "text": "Olá! Como posso ajudar?"}
    assert (reply["text"], reply["delivery_status"], reply["external_id"]) == (
        "Olá! Como posso ajudar?", "sent", fake_evo.sent_ids[0])
    prompt = fake_llm.requests[0]["json"]
    assert prompt["model"] == "gpt-4o-mini"
    assert "You are the assistant of Smile Clinic." in prompt["messages"][0]["content"]
    assert all(t in prompt_text(prompt) for t in texts)
    dialog = await seeded.fetchrow("SELECT client_message_count, burst_started_at FROM dialog_analysis")
    assert dict(dialog) == {"client_message_count": 5, "burst_started_at": None}
    assert await seeded.fetchval("SELECT count(*) FROM jobs WHERE name = 'bot.dialog'") == 0


async def test_next_burst_sees_the_history_and_a_redelivery_gets_no_reply(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, fake_llm: FakeLLM
) -> None:
    first = text_message(PHONE, "Oi", "3EB0HIST1")
    async with start_bot() as bot:
        await bot.post(first)
        await qualified(bot, 1)
        status, answer = await bot.post(first)  # Evolution redelivers the same message
        assert (status, answer["status"]) == (200, "duplicate")
        await bot.post(text_message(PHONE, "quero agendar", "3EB0HIST2"))
        await qualified(bot, 2)
    assert len(fake_evo.requests) == 2 and fake_llm.calls == 2
    roles = [m["role"] for m in fake_llm.requests[1]["json"]["messages"]]
    assert roles == ["system", "user", "assistant", "user"]
    assert len(await bot_messages(seeded)) == 2


async def test_operator_message_stops_replies_but_not_qualification(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0OP1"))
        await qualified(bot, 1)
        status, answer = await bot.post(load("from-me-operator-2.3.7.json"))
        assert (status, answer["status"]) == (200, "stored")
        await qualified(bot, 2)
        await bot.post(text_message(PHONE, "Oi Ana, quero agendar", "3EB0OP2"))
        await qualified(bot, 3)
    assert len(fake_evo.requests) == 1  # only the reply before the operator took over
    roles = await seeded.fetch("SELECT role FROM messages ORDER BY id")
    assert [r["role"] for r in roles] == ["client", "bot", "operator", "client"]
    assert await seeded.fetchval("SELECT bot_paused_until > now() + interval '11 hours' FROM dialog_analysis")


async def test_our_own_reply_coming_back_is_not_an_operator(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0ECHO1"))
        await qualified(bot, 1)
        echo = text_message(PHONE, "Olá! Como posso ajudar?", fake_evo.sent_ids[0], from_me=True)
        status, answer = await bot.post(echo)
        assert (status, answer["status"]) == (200, "echo")
        await bot.post(text_message(PHONE, "quanto custa?", "3EB0ECHO2"))
        await qualified(bot, 2)
    assert len(fake_evo.requests) == 2
    assert await seeded.fetchval("SELECT count(*) FROM messages WHERE role = 'operator'") == 0
    assert await seeded.fetchval("SELECT bot_paused_until FROM dialog_analysis") is None


async def test_a_pending_reply_echo_is_recognised_by_its_text(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0PEND1"))
        await bot.drain()
        dialog_id = await seeded.fetchval("SELECT id FROM dialog_analysis")
        await seeded.execute(
            """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, delivery_status)
               VALUES ('clinic-main', 'qb-x', $1, 'bot', 'Olá!', 'pending')""", dialog_id)
        status, answer = await bot.post(text_message(PHONE, "Olá!", "3EB0NOTYETKNOWN", from_me=True))
        assert await bot.drain() == 0
    assert (status, answer["status"]) == (200, "echo")
    assert await seeded.fetchval("SELECT bot_paused_until FROM dialog_analysis") is None


async def test_without_llm_key_no_reply_but_dialog_stored_and_qualified(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, fake_llm: FakeLLM
) -> None:
    async with start_bot(llm=False) as bot:
        await bot.post(load("ctwa-text-2.3.7.json"))
        runs = await qualified(bot)
    assert runs == [await seeded.fetchval("SELECT id FROM dialog_analysis")]
    assert fake_evo.requests == [] and fake_llm.calls == 0
    assert await seeded.fetchval("SELECT ctwa_clid FROM leads") is not None
    assert await bot_messages(seeded) == []


@pytest.mark.parametrize(("mode", "error"), [
    ("unauthorized", "401: Evolution refused the instance api_key"),
    ("unknown_instance", '404: The "clinic-main" instance does not exist'),
    ("not_on_whatsapp", "400: the number is not on WhatsApp"),
    ("server_error", "500: Evolution server error (Error: Connection Closed)"),
])
async def test_evolution_errors_are_recorded_not_retried(
    mode: str, error: str, start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    fake_evo.mode = mode
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0ERR1"))
        await qualified(bot)
    [reply] = await bot_messages(seeded)
    assert (reply["delivery_status"], reply["delivery_error"], reply["external_id"]) == ("failed", error, None)
    assert len(fake_evo.requests) == 1


async def test_llm_failure_is_retried_then_the_reply_is_sent_once(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot_jobs, "LLM_RETRY_SECONDS", 0.05)
    answers: list[Any] = [{"status": 500}, "Olá de novo!"]
    fake_llm.responder = lambda _req: answers.pop(0) if answers else "extra"
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0LLM1"))
        await qualified(bot)
    assert fake_llm.calls == 2 and fake_evo.texts() == ["Olá de novo!"]


async def test_llm_down_leaves_the_burst_unanswered_but_qualified(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution, fake_llm: FakeLLM,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(bot_jobs, "LLM_RETRY_SECONDS", 0.05)
    fake_llm.responder = lambda _req: {"status": 503}
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0LLM2"))
        await qualified(bot)
    assert fake_llm.calls == bot_jobs.LLM_ATTEMPTS and fake_evo.requests == []


async def test_lid_chat_is_answered_at_its_lid(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    body = load("lid-2.3.6.json")
    del body["data"]["key"]["remoteJidAlt"]
    async with start_bot() as bot:
        await bot.post(body)
        await qualified(bot)
    assert await seeded.fetchval("SELECT is_lid FROM leads") is True
    assert fake_evo.requests[0]["json"]["number"] == "203469835821091@lid"


async def test_a_person_who_keeps_typing_is_answered_within_the_maximum_wait(
    start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    async with start_bot(workers=False, buffer_seconds=30, buffer_max_seconds=2) as bot:
        for i in range(3):
            await bot.post(text_message(PHONE, f"linha {i}", f"3EB0TYPE{i}"))
            await bot.drain()
    job = await seeded.fetchrow("SELECT run_at - first_queued_at AS wait FROM jobs WHERE name = 'bot.dialog'")
    assert job["wait"].total_seconds() == pytest.approx(2, abs=0.01)
