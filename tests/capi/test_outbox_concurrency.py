"""Several senders at once (any workers, any processes) never send one row twice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import aiohttp
import asyncpg
import pytest

import capi.jobs
from capi.ledger import Outcome, next_due_in
from capi.outbox import Outbox
from core.context import AppContext
from core.jobs import JobRegistry, Worker
from core.settings import Settings
from qualification.dialogs import mark_sent
from tests.capi.conftest import log_row, make_dialog, record
from tests.fakes.graph import FakeGraph
from tests.helpers import wait_for

MakeOutbox = Callable[..., Outbox]


async def test_two_concurrent_senders_never_send_one_row_twice(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    graph.latency = 0.02
    dialogs = [await make_dialog(seeded) for _ in range(60)]
    for d in dialogs:
        for level in (1, 2):
            await record(seeded, d, level)
    first, second = outbox(capi_batch_size=7, capi_concurrency=3), outbox(capi_batch_size=7, capi_concurrency=3)
    a, b = await asyncio.gather(first.run(), second.run())

    assert a.sent + b.sent == 120 and a.sent > 0 and b.sent > 0
    assert len(graph.delivered) == 120 and not graph.duplicates()
    assert await seeded.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'") == 120
    assert await seeded.fetchval(
        "SELECT count(*) FROM dialog_analysis WHERE capi_interest_sent AND capi_qualified_sent"
    ) == 60


async def test_a_sender_whose_lease_ran_out_cannot_overwrite_the_outcome_of_the_one_that_took_over(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    late = outbox()
    [claimed] = await late._claim()
    await seeded.execute("UPDATE capi_events_log SET lease_until = now()")  # its lease runs out
    assert (await outbox().run()).sent == 1
    await late._record([Outcome(claimed, "error", "a late failure")])
    row = await log_row(seeded, dialog, 1)
    assert (row["status"], row["error"], row["attempts"]) == ("success", None, 2)


@pytest.fixture
async def workers(
    seeded: asyncpg.Pool, http: aiohttp.ClientSession, settings: Settings
) -> AsyncIterator[list[Worker[AppContext]]]:
    """Two job workers (as two processes would run) with the CAPI handlers."""
    registry: JobRegistry[AppContext] = JobRegistry()
    capi.jobs.register_jobs(registry, delivered=mark_sent)
    ctx = AppContext(settings=settings, pool=seeded, http=http, llm=None)
    started = [Worker(seeded, registry, ctx, concurrency=2, poll_seconds=0.05, lease_seconds=5) for _ in range(2)]
    tasks = [asyncio.create_task(w.run()) for w in started]
    yield started
    for w in started:
        await w.stop(2)
    await asyncio.gather(*tasks, return_exceptions=True)


async def test_the_sender_job_delivers_and_reschedules_itself_after_failures(
    seeded: asyncpg.Pool, graph: FakeGraph, workers: list[Worker[AppContext]]
) -> None:
    graph.script.extend(["transient", "malformed", "close", "throttle"])
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)

    async def delivered() -> bool:
        return bool((await log_row(seeded, dialog, 1))["status"] == "success")

    await wait_for(delivered, timeout=10, what="the event delivered after four failures")
    row = await log_row(seeded, dialog, 1)
    assert row["attempts"] == 5 and graph.delivered[row["event_id"]] == 1
    assert await seeded.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'") == 0


async def test_workers_deliver_a_stream_of_decisions_exactly_once(
    seeded: asyncpg.Pool, graph: FakeGraph, workers: list[Worker[AppContext]]
) -> None:
    graph.latency = 0.01
    dialogs = []
    for _ in range(40):
        dialogs.append(await make_dialog(seeded))
        await record(seeded, dialogs[-1], 1)

    async def all_sent() -> bool:
        return bool(await seeded.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'") == 40)

    await wait_for(all_sent, timeout=10, what="40 events delivered")
    assert len(graph.delivered) == 40 and not graph.duplicates()


async def test_a_lane_hands_rows_back_unposted_when_its_lease_could_run_out_mid_request(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    slow = outbox()
    slow.lease = 0.5  # as if the claim's lease were nearly used up before its request could start
    assert (await slow.run()).requests == 0
    row = await log_row(seeded, dialog, 1)
    assert (row["status"], row["attempts"]) == ("pending", 0) and not graph.requests
    assert (await outbox().run()).sent == 1


async def test_a_row_in_flight_is_not_due_until_its_lease_runs_out_and_then_is(
    seeded: asyncpg.Pool, outbox: MakeOutbox
) -> None:
    # the sender loop sleeps on next_due_in: a leased row must not read as due (a busy loop of empty
    # claims), nor be forgotten (a crashed sender's rows must come back when the lease ends)
    first, second = await make_dialog(seeded), await make_dialog(seeded)
    await record(seeded, first, 1)
    sender = outbox()
    [claimed] = await sender._claim()
    due_in = await next_due_in(seeded)
    assert due_in is not None and 0.9 * sender.lease < due_in <= sender.lease
    assert await sender._claim() == []
    await record(seeded, second, 1)
    assert await next_due_in(seeded) == 0  # a due row beside the one in flight
    [other] = await sender._claim()
    assert other.id != claimed.id
    await seeded.execute("UPDATE capi_events_log SET lease_until = now() WHERE id = $1", claimed.id)
    assert await next_due_in(seeded) == 0
    [again] = await sender._claim()
    assert (again.id, again.attempts) == (claimed.id, 2)


async def test_rows_that_arrive_during_a_run_are_posted_by_every_lane_not_only_the_one_still_working(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    # a run starts with one row: its second lane finds nothing and stops; rows recorded meanwhile
    # must not then be left to the one lane in turn
    graph.latency = 0.5
    in_flight, most = 0, 0
    answer = graph._sleep_rest

    async def counted(started: float) -> None:
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        try:
            await answer(started)
        finally:
            in_flight -= 1

    monkeypatch.setattr(graph, "_sleep_rest", counted)
    dialogs = [await make_dialog(seeded) for _ in range(4)]
    await record(seeded, dialogs[0], 1)
    run = asyncio.create_task(outbox(capi_batch_size=1, capi_concurrency=2).run())
    async def first_posted() -> bool:
        return in_flight == 1

    await wait_for(first_posted, timeout=5, what="the first request in flight")
    for dialog in dialogs[1:]:
        await record(seeded, dialog, 1)
    assert (await asyncio.wait_for(run, 10)).sent == 4
    assert most == 2
