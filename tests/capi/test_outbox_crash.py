"""The one at-least-once window: the sender dies after Meta's 200, before its commit."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import asyncpg
import pytest

from capi.ledger import Outcome
from capi.outbox import Outbox
from tests.capi.conftest import log_row, make_dialog, record
from tests.fakes.graph import FakeGraph
from tests.helpers import wait_for

MakeOutbox = Callable[..., Outbox]


async def _die_after_meta_answered(monkeypatch: pytest.MonkeyPatch, outbox: MakeOutbox, how: str) -> None:
    reached = asyncio.Event()

    async def commit(self: Outbox, outcomes: list[Outcome]) -> None:
        reached.set()
        if how == "killed":
            await asyncio.Event().wait()  # the process hangs here until it is killed
        raise ConnectionResetError("the database went away before the commit")

    with monkeypatch.context() as patch:
        patch.setattr(Outbox, "_commit_success", commit)
        run = asyncio.create_task(outbox().run())
        await asyncio.wait_for(reached.wait(), 5)
        if how == "killed":
            run.cancel()
        with contextlib.suppress(asyncio.CancelledError, ConnectionResetError, ExceptionGroup):
            await run


@pytest.mark.parametrize("how", ["killed", "commit failed"])
async def test_a_sender_dying_between_metas_200_and_the_commit_resends_with_the_same_event_id(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 2)
    await _die_after_meta_answered(monkeypatch, outbox, how)

    row = await log_row(seeded, dialog, 2)
    event_id = row["event_id"]
    assert graph.delivered[event_id] == 1  # Meta has it ...
    assert (row["status"], row["attempts"], row["sent_at"]) == ("pending", 1, None)  # ... our log does not

    await outbox().run()  # the dead sender's claim (its lease) still holds the row: nobody sends it meanwhile
    assert len(graph.requests) == 1

    # the lease runs out (30 s in these settings; moved instead of waited for) and the next run resends
    await seeded.execute("UPDATE capi_events_log SET lease_until = now() WHERE id = $1", row["id"])
    assert (await outbox().run()).sent == 1
    row = await log_row(seeded, dialog, 2)
    assert (row["status"], row["attempts"], row["event_id"]) == ("success", 2, event_id)
    assert [e["event_id"] for e in graph.events_sent()] == [event_id, event_id]
    assert graph.delivered[event_id] == 2  # Meta does not deduplicate: counted twice, as documented
    flag = await seeded.fetchval("SELECT capi_qualified_event_id FROM dialog_analysis WHERE id = $1", dialog)
    assert flag == event_id


async def test_a_claim_expires_by_itself_so_a_dead_senders_rows_are_picked_up(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    dead = outbox()
    dead.lease = 0.5
    assert len(await dead._claim()) == 1  # claimed, then the sender vanished without a word
    assert (await outbox().run()).sent == 0

    async def picked_up() -> bool:
        return (await outbox().run()).sent == 1

    await wait_for(picked_up, timeout=5, what="the row claimed by a dead sender sent after its lease")
    assert (await log_row(seeded, dialog, 1))["attempts"] == 2
