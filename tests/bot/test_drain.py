"""The intake drain: stored messages become leads, dialogs and debounced jobs, in batches."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from prometheus_client import REGISTRY

from bot.drain import BATCH, LOCK_KEY, PART_SQL, PARTITIONS, DrainLoop, drain
from core.context import AppContext
from tests.bot.conftest import Bot, StartBot, text_message
from tests.fakes.evolution import FakeEvolution
from tests.fakes.evolution_webhook import client_message
from tests.helpers import wait_for

PHONE = "5511988887777"


def replies(outcome: str) -> float:
    return REGISTRY.get_sample_value("qualibot_bot_replies_total", {"outcome": outcome}) or 0.0


async def test_many_chats_over_several_batches_are_linked_exactly(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    chats, per_chat = 300, 4  # 1,200 messages: more than two batches, chats split across batches
    async with start_bot(workers=False, buffer_seconds=5, buffer_max_seconds=60) as bot:
        for round_ in range(per_chat):
            posts = [bot.post(text_message(f"7916{c:07d}", f"msg {round_}", f"3EB0MANY{c}-{round_}"))
                     for c in range(chats)]
            assert {status for status, _ in await asyncio.gather(*posts)} == {200}
        assert await seeded.fetchval("SELECT count(*) FROM leads") == 0  # nothing linked before the drain
        assert await bot.drain() == chats * per_chat
    assert await seeded.fetchval("SELECT count(*) FROM messages WHERE dialog_id IS NULL") == 0
    dialogs = await seeded.fetch(
        """SELECT d.client_message_count AS n, d.burst_started_at = first.at AS burst_from_first,
                  d.last_client_message_at = last.at AS last_is_last, l.phone = d.contact_phone AS same_chat,
                  j.run_at = last.at + interval '5 seconds' AS debounced_from_last,
                  j.first_queued_at = first.at AS waits_from_first
           FROM dialog_analysis d JOIN leads l ON l.id = d.lead_id
           JOIN LATERAL (SELECT min(created_at) AS at FROM messages WHERE dialog_id = d.id) first ON true
           JOIN LATERAL (SELECT max(created_at) AS at FROM messages WHERE dialog_id = d.id) last ON true
           JOIN jobs j ON j.key = 'dialog:' || d.id""")
    assert len(dialogs) == chats
    assert {tuple(r.values()) for r in dialogs} == {(per_chat, True, True, True, True, True)}
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == chats


async def test_concurrent_drains_never_take_the_same_messages(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        for i in range(BATCH + 10):
            await bot.post(text_message(f"7916{i:07d}", "oi", f"3EB0LOCK{i}"))
        first, second = await asyncio.gather(drain(seeded, bot.settings), drain(seeded, bot.settings))
        # each drain locks its own partitions: one may take all it can reach and the other the
        # rest, or they split the partitions between them (e.g. 192 and 318); never a message twice
        assert max(first, second) <= BATCH and first + second <= BATCH + 10
        await bot.drain()
    assert await seeded.fetchval("SELECT sum(client_message_count) FROM dialog_analysis") == BATCH + 10


async def test_a_removed_instance_does_not_hold_up_the_others(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        await bot.post(text_message(PHONE, "oi", "3EB0GONE1"))
        await seeded.execute("DELETE FROM whatsapp_instances WHERE name = 'clinic-main'")
        cloud = text_message("5491131376731", "hola", "3EB0STAYS1", instance="clinic-cloud")
        status, _ = await bot.post(cloud, headers={"X-Webhook-Secret": "cloud-webhook-secret-0123456789"})
        assert status == 200
        assert await bot.drain() == 1
    # the removed instance's message is kept, unlinked; the other instance's chat is linked
    rows = await seeded.fetch("SELECT message_id, dialog_id IS NOT NULL AS linked FROM messages ORDER BY id")
    assert [tuple(r.values()) for r in rows] == [("3EB0GONE1", False), ("3EB0STAYS1", True)]


async def test_an_operator_message_waiting_for_the_drain_still_stops_the_reply(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    before = replies("intake_pending")
    # the buffer leaves the operator's message time to arrive before the dialog job runs, even on a
    # loaded machine (with 0.5 s a slow post let the job reply first)
    async with start_bot(buffer_seconds=3) as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0WAIT1"))
        await wait_for(lambda: _linked(bot), what="the client message to be linked")  # its job: due in 3 s
        # every drain busy elsewhere: another transaction holds all the chats' partitions
        async with seeded.acquire() as busy:
            transaction = busy.transaction()
            await transaction.start()
            await busy.execute("SELECT pg_advisory_xact_lock($1, p) FROM generate_series(0, $2 - 1) p",
                               LOCK_KEY, PARTITIONS)
            try:
                await bot.post(text_message(PHONE, "Oi, aqui é a Ana", "3EB0WAIT2", from_me=True))
                await wait_for(lambda: _above(replies("intake_pending"), before), what="the dialog job to see the wait")
            finally:
                await transaction.commit()
        # free again: a drain links the operator message (pause, and the dialog's next run)
        await wait_for(lambda: _none_waiting(seeded), what="the operator message to be linked")
        await wait_for(lambda: _done(seeded), what="the dialog's next run")
    assert fake_evo.requests == []
    assert await seeded.fetchval("SELECT bot_paused_until > now() FROM dialog_analysis")
    assert bot.qualified == [await seeded.fetchval("SELECT id FROM dialog_analysis")]


async def _linked(bot: Bot) -> bool:
    await bot.drain()
    return bool(await bot.pool.fetchval("SELECT count(*) = 1 FROM dialog_analysis"))


async def _above(value: float, floor: float) -> bool:
    return value > floor


async def _done(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval("SELECT count(*) = 0 FROM jobs"))


async def test_a_batch_that_fails_midway_leaves_everything_for_the_next_drain(
    start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    # a test-only trigger makes the dialog upsert fail for one chat, after the leads were written
    await seeded.execute(
        """CREATE FUNCTION test_refuse_dialog() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.contact_phone = '79160000002' THEN RAISE EXCEPTION 'disk full, say'; END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER test_refuse_dialog BEFORE INSERT ON dialog_analysis
               FOR EACH ROW EXECUTE FUNCTION test_refuse_dialog();""")
    try:
        async with start_bot(workers=False) as bot:
            for i in range(1, 4):
                await bot.post(text_message(f"7916000000{i}", "oi", f"3EB0FAIL{i}"))
            with pytest.raises(asyncpg.RaiseError, match="disk full"):
                await drain(seeded, bot.settings)
            assert await seeded.fetchval("SELECT count(*) FROM leads") == 0  # the whole batch rolled back
            assert await seeded.fetchval("SELECT count(*) FROM messages WHERE dialog_id IS NULL") == 3
            await seeded.execute("DROP TRIGGER test_refuse_dialog ON dialog_analysis")
            assert await bot.drain() == 3
    finally:
        await seeded.execute("DROP TRIGGER IF EXISTS test_refuse_dialog ON dialog_analysis;"
                             "DROP FUNCTION IF EXISTS test_refuse_dialog()")
    counts = await seeded.fetch("SELECT client_message_count AS n FROM dialog_analysis")
    assert [r["n"] for r in counts] == [1, 1, 1]
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == 3


@pytest.fixture
async def bad_lead(seeded: asyncpg.Pool) -> AsyncIterator[None]:
    """A test-only trigger that refuses one chat's lead with a data error, as a bad value would."""
    await seeded.execute(
        """CREATE FUNCTION test_bad_lead() RETURNS trigger LANGUAGE plpgsql AS $$
           BEGIN
               IF NEW.phone = '79160000002' THEN
                   RAISE EXCEPTION 'value out of range, say' USING ERRCODE = 'numeric_value_out_of_range';
               END IF;
               RETURN NEW;
           END $$;
           CREATE TRIGGER test_bad_lead BEFORE INSERT ON leads FOR EACH ROW EXECUTE FUNCTION test_bad_lead();""")
    yield
    await seeded.execute("DROP TRIGGER IF EXISTS test_bad_lead ON leads; DROP FUNCTION IF EXISTS test_bad_lead()")


async def test_a_message_that_cannot_be_linked_is_set_aside_and_the_others_go_on(
    start_bot: StartBot, seeded: asyncpg.Pool, bad_lead: None
) -> None:
    async with start_bot(buffer_seconds=30) as bot:  # the worker's own drain loop does the work
        for i in range(1, 5):
            await bot.post(text_message(f"7916000000{i}", "oi", f"3EB0BAD{i}"))
        await wait_for(lambda: _settled(seeded), what="three chats linked and one message set aside")
        rows = await seeded.fetch(
            "SELECT message_id, dialog_id IS NOT NULL AS linked, intake_error FROM messages ORDER BY id")
        assert [(r["message_id"], r["linked"]) for r in rows] == [
            ("3EB0BAD1", True), ("3EB0BAD2", False), ("3EB0BAD3", True), ("3EB0BAD4", True)]
        assert "value out of range, say" in rows[1]["intake_error"]
        # the cause fixed, clearing the error puts the message back in line
        await seeded.execute("DROP TRIGGER test_bad_lead ON leads")
        await seeded.execute("UPDATE messages SET intake_error = NULL")
        await wait_for(lambda: _all_linked(seeded), what="the message set aside to be linked")
    assert await seeded.fetchval("SELECT count(*) FROM dialog_analysis") == 4


async def test_a_failed_batch_is_retried_one_message_at_a_time(
    start_bot: StartBot, seeded: asyncpg.Pool, bad_lead: None
) -> None:
    async with start_bot(workers=False) as bot, aiohttp.ClientSession() as http:
        for i in range(1, 5):
            await bot.post(text_message(f"7916000000{i}", "oi", f"3EB0BAD{i}"))
        step, ctx = DrainLoop(), AppContext(settings=bot.settings, pool=seeded, http=http, llm=None)
        assert await step(ctx) == 0.0 and step.one_by_one == BATCH  # the batch of 4 failed as a whole
        assert await seeded.fetchval("SELECT count(*) FROM messages WHERE dialog_id IS NOT NULL") == 0
        for _ in range(4):
            assert await step(ctx) == 0.0  # one message each: linked, set aside, linked, linked
        assert await _settled(seeded)
        assert await step(ctx) == bot.settings.intake_poll_seconds and step.one_by_one == 0  # back to batches


async def _settled(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval(
        """SELECT count(*) FILTER (WHERE dialog_id IS NOT NULL) = 3
                  AND count(*) FILTER (WHERE intake_error IS NOT NULL) = 1
           FROM messages"""))


async def _none_waiting(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval("SELECT count(*) = 0 FROM messages WHERE dialog_id IS NULL"))


async def _all_linked(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval("SELECT count(*) = 4 FROM messages WHERE dialog_id IS NOT NULL"))


async def test_a_drain_links_other_chats_while_another_drain_holds_a_chats_partition(
    start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    async with start_bot(workers=False) as bot:
        for c in range(20):
            await bot.post(text_message(f"7916{c:07d}", "oi", f"3EB0PART{c}"))
        held = await seeded.fetchval(f"SELECT {PART_SQL} FROM messages m WHERE contact = '79160000003'")
        async with seeded.acquire() as other, other.transaction():  # another process's drain, mid-batch
            await other.execute("SELECT pg_advisory_xact_lock($1, $2)", LOCK_KEY, held)
            linked = await drain(seeded, bot.settings)
            waiting = await seeded.fetch(f"SELECT contact, {PART_SQL} AS part FROM messages m WHERE dialog_id IS NULL")
        assert linked == 20 - len(waiting) and linked > 0
        assert {r["part"] for r in waiting} == {held}  # only that partition's chats wait, and only for it
        assert "79160000003" in {r["contact"] for r in waiting}
        assert await drain(seeded, bot.settings) == len(waiting)  # released: linked now
    assert await seeded.fetchval("SELECT count(*) FROM messages WHERE dialog_id IS NULL") == 0


async def test_parallel_drains_link_every_message_once_and_each_chat_in_order(
    start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    chats, per_chat = 40, 5
    async with start_bot(workers=False, buffer_seconds=5) as bot:
        for round_ in range(per_chat):  # every message carries an ad's click id: the first must win
            posts = [bot.post(client_message(f"7916{c:07d}", f"msg {round_}", f"3EB0ORD{c}-{round_}",
                                             clid=f"clid-{c}-{round_}")) for c in range(chats)]
            assert {status for status, _ in await asyncio.gather(*posts)} == {200}
        done: list[int] = []

        async def drainer() -> None:
            while n := await drain(seeded, bot.settings, batch=15):
                done.append(n)

        for _ in range(3):  # until a pass of four drains finds nothing (a drain may skip held partitions)
            await asyncio.gather(*(drainer() for _ in range(4)))
    assert sum(done) == chats * per_chat
    rows = await seeded.fetch(
        """SELECT l.phone, l.ctwa_clid, d.client_message_count AS n
           FROM dialog_analysis d JOIN leads l ON l.id = d.lead_id ORDER BY l.phone""")
    assert len(rows) == chats
    assert all(r["n"] == per_chat and r["ctwa_clid"] == f"clid-{int(r['phone'][4:])}-0" for r in rows)
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == chats
