"""`qualibot capi retry`: a fixed cause gets the event sent, once; what cannot be sent stays put."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg
import pytest

from capi.outbox import Outbox
from tests.capi.conftest import log_row, make_dialog, record
from tests.fakes.graph import FakeGraph


async def test_nothing_to_retry(seeded: asyncpg.Pool, qualibot: Callable[..., Awaitable[int]],
                                capsys: pytest.CaptureFixture[str]) -> None:
    assert await qualibot("capi", "retry") == 0
    assert "nothing to retry" in capsys.readouterr().out


async def test_a_skipped_event_is_sent_once_its_token_is_added(
    seeded: asyncpg.Pool, outbox: Callable[..., Outbox], graph: FakeGraph,
    qualibot: Callable[..., Awaitable[int]], capsys: pytest.CaptureFixture[str],
) -> None:
    await seeded.execute("UPDATE ad_accounts SET access_token = NULL")
    await seeded.execute("UPDATE user_accounts SET access_token = NULL")
    dialog = await make_dialog(seeded)
    assert await record(seeded, dialog, 1) == "skipped"

    assert await qualibot("capi", "retry", "--status", "skipped") == 0
    assert "still skipped (cause remains): 1" in capsys.readouterr().out
    assert (await log_row(seeded, dialog, 1))["status"] == "skipped"

    await seeded.execute("UPDATE ad_accounts SET access_token = 'EAAH-test-ad-account-token'")
    assert await qualibot("capi", "retry", "--dry-run") == 0
    assert "would queue for sending:      1" in capsys.readouterr().out
    assert (await log_row(seeded, dialog, 1))["status"] == "skipped"  # a dry run changes nothing

    assert await qualibot("capi", "retry") == 0
    assert "queued for sending:      1" in capsys.readouterr().out
    await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "success" and row["error"] is None
    assert graph.delivered[row["event_id"]] == 1

    assert await qualibot("capi", "retry") == 0
    assert "nothing to retry" in capsys.readouterr().out
    await outbox().run()
    assert graph.delivered[row["event_id"]] == 1  # never twice


async def test_a_rejected_event_name_is_resent_after_the_fix(
    seeded: asyncpg.Pool, outbox: Callable[..., Outbox], graph: FakeGraph,
    qualibot: Callable[..., Awaitable[int]], capsys: pytest.CaptureFixture[str],
) -> None:
    await seeded.execute("UPDATE account_directions SET capi_event_names = '{}'")  # the defaults: Lead, ...
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    # a row recorded before installation ids existed keeps its event_id on every retry
    await seeded.execute("UPDATE capi_events_log SET event_id = 'legacy-event-id-1', "
                         "request = jsonb_set(request, '{data,0,event_id}', '\"legacy-event-id-1\"')")
    await outbox().run()
    failed = await log_row(seeded, dialog, 1)
    assert failed["status"] == "error" and "LeadSubmitted" in (failed["hint"] or "")

    await seeded.execute("""UPDATE account_directions SET capi_event_names = '{"1": "LeadSubmitted"}'""")
    assert await qualibot("capi", "retry", "--status", "error", "--direction", "implants") == 0
    await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "success" and row["event_name"] == "LeadSubmitted"
    assert row["event_id"] == failed["event_id"] == "legacy-event-id-1"
    assert graph.delivered["legacy-event-id-1"] == 1


async def test_events_older_than_seven_days_are_not_queued(
    seeded: asyncpg.Pool, qualibot: Callable[..., Awaitable[int]], capsys: pytest.CaptureFixture[str],
) -> None:
    await seeded.execute("UPDATE ad_accounts SET access_token = NULL")
    await seeded.execute("UPDATE user_accounts SET access_token = NULL")
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1, reached_at=datetime.now(UTC) - timedelta(days=8))
    await seeded.execute("UPDATE ad_accounts SET access_token = 'EAAH-test-ad-account-token'")
    assert await qualibot("capi", "retry") == 0
    assert "too old for Meta (>7 days): 1" in capsys.readouterr().out
    assert (await log_row(seeded, dialog, 1))["status"] == "skipped"


async def test_a_bad_since_is_named(seeded: asyncpg.Pool, qualibot: Callable[..., Awaitable[int]]) -> None:
    with pytest.raises(SystemExit) as exc:
        await qualibot("capi", "retry", "--since", "yesterday")
    assert exc.value.code == 2
