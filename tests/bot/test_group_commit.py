"""Group commit of intake: concurrent webhooks share a transaction, each 200 follows its commit,
a redelivery is still recognised, and a message PostgreSQL refuses fails its webhook alone."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import asyncpg
import pytest

from bot.connections import PinnedConnections
from bot.group_commit import GroupCommit
from bot.instances import InstanceCache
from bot.intake import Stored, store_messages
from bot.parse import Message
from tests.bot.conftest import StartBot, text_message


async def stored(pool: asyncpg.Pool, message_id: str) -> bool:
    return bool(await pool.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE message_id = $1)", message_id))


async def test_concurrent_webhooks_share_commits_and_each_200_follows_its_own(start_bot: StartBot) -> None:
    async with start_bot(llm=False, workers=False) as bot:
        async def deliver(i: int) -> tuple[int, str, bool]:
            message_id = f"GC{i:04d}"
            status, answer = await bot.post(text_message(f"7916555{i:04d}", f"hello {i}", message_id))
            # read on another connection the moment the 200 arrives: it is committed already
            return status, answer["status"], await stored(bot.pool, message_id)

        results = await asyncio.gather(*(deliver(i) for i in range(40)))
        assert results == [(200, "stored", True)] * 40
        # xmin is the id of the transaction that wrote a row: fewer transactions than webhooks
        transactions = await bot.pool.fetchval(
            "SELECT count(DISTINCT xmin::text) FROM messages WHERE message_id LIKE 'GC%'")
        assert transactions < 40


async def test_a_redelivery_is_recognised_within_a_batch_and_after_it(start_bot: StartBot) -> None:
    async with start_bot(llm=False, workers=False) as bot:
        body = text_message("79165550001", "hello", "REDELIVERED")
        others = [text_message(f"7916556{i:04d}", "hi", f"OTHER{i}") for i in range(10)]
        answers = await asyncio.gather(*(bot.post(b) for b in [body, *others, body]))
        assert all(status == 200 for status, _ in answers)
        assert sorted([answers[0][1]["status"], answers[-1][1]["status"]]) == ["duplicate", "stored"]
        assert [a["status"] for _, a in answers[1:-1]] == ["stored"] * 10
        assert await bot.post(body) == (200, {"id": "REDELIVERED", "status": "duplicate"})
        assert await bot.pool.fetchval("SELECT count(*) FROM messages WHERE message_id = 'REDELIVERED'") == 1


def message(message_id: str, text: str) -> Message:
    return Message(message_id=message_id, contact="79165550002", is_lid=False, from_me=False, push_name=None,
                   text=text, media_type=None, sent_at=datetime.now(UTC), referral=None)


async def test_a_message_postgres_refuses_fails_its_webhook_alone(seeded: asyncpg.Pool) -> None:
    # the HTTP layer drops NUL before here (core.web); a caller that did not would meet PostgreSQL's refusal
    instance = await InstanceCache().get(seeded, "clinic-main")
    assert instance is not None
    conns = PinnedConnections()
    webhooks = [[message(f"GOOD{i}", "fine")] for i in range(6)]
    webhooks.insert(3, [message("BAD", "nul \x00 inside")])
    outcomes = await asyncio.gather(*(store_messages(conns, seeded, instance, w) for w in webhooks),
                                    return_exceptions=True)
    await conns.close()
    assert isinstance(outcomes[3], asyncpg.exceptions.CharacterNotInRepertoireError)
    assert [o for i, o in enumerate(outcomes) if i != 3] == [[Stored("stored", f"GOOD{i}")] for i in range(6)]
    assert await seeded.fetchval("SELECT count(*) FROM messages WHERE message_id LIKE 'GOOD%'") == 6
    assert not await stored(seeded, "BAD")


async def test_a_cancelled_caller_does_not_stop_its_neighbours_write() -> None:
    written: list[list[int]] = []
    release = asyncio.Event()

    async def flush(items: list[int]) -> list[int]:
        await release.wait()
        written.append(items)
        return [i * 10 for i in items]

    group: GroupCommit[int, int] = GroupCommit(flush, linger=0.001)
    first, second = asyncio.create_task(group.submit(1)), asyncio.create_task(group.submit(2))
    await asyncio.sleep(0.01)  # both are in the batch being written
    first.cancel()
    release.set()
    assert await second == 20
    assert written == [[1, 2]]
    with pytest.raises(asyncio.CancelledError):
        await first
