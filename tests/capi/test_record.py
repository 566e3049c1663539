"""record_event: one decision per (dialog, level), pending when sendable, else skipped with the reason."""

from __future__ import annotations

import asyncio
import hashlib
import json
import uuid
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from capi.jobs import CAPI_CHANNEL
from capi.record import event_id_for, record_event
from core.migrate import installation_id, migrate
from qualification.door import dialog_contact
from tests.capi.conftest import log_row, make_dialog, record
from tests.dbsetup import fresh_database
from tests.helpers import notifications, wait_for
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WABA_ID


def capi_wakeups(pool: asyncpg.Pool) -> AbstractAsyncContextManager[list[str]]:
    """The CAPI sender's wake-ups (NOTIFY qualibot_capi) seen by a listening connection."""
    return notifications(pool, CAPI_CHANNEL)


async def _count_is(items: list[str], n: int) -> bool:
    return len(items) == n


async def test_a_sendable_level_is_pending_with_the_event_and_wakes_the_sender(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded, clid="ARAkLk-1", phone="79161234567")
    reached = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
    async with capi_wakeups(seeded) as wakeups:
        assert await record(seeded, dialog, 1, reached_at=reached) == "pending"
        await wait_for(lambda: _count_is(wakeups, 1), what="the sender's wake-up")

    row = await log_row(seeded, dialog, 1)
    assert (row["status"], row["event_name"], row["source"]) == ("pending", "LeadSubmitted", "whatsapp")
    assert row["pixel_id"] == PIXEL_ID
    installation = await installation_id(seeded)
    assert row["event_id"] == event_id_for(installation, dialog_id=dialog, direction_id=None, crm_entity=None,
                                           level=1)
    assert uuid.UUID(row["event_id"]).version == 5
    assert row["event_time"] == reached and row["contact_phone"] == "79161234567"
    event = row["request"]["data"][0]
    assert event["event_id"] == row["event_id"] and event["event_time"] == int(reached.timestamp())
    assert event["user_data"] == {
        "ctwa_clid": "ARAkLk-1", "whatsapp_business_account_id": WABA_ID,
        "ph": [hashlib.sha256(b"79161234567").hexdigest()],
    }
    stored = json.dumps(dict(row), default=str)
    assert META_TOKEN not in stored and USER_TOKEN not in stored
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == 0  # no sender job: a loop, woken


async def test_the_same_level_twice_is_one_decision_with_one_event_id(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    assert await record(seeded, dialog, 2) == "pending"
    first = await log_row(seeded, dialog, 2)
    assert await record(seeded, dialog, 2, reached_at=datetime.now(UTC) + timedelta(minutes=5)) is None
    assert await seeded.fetchval("SELECT count(*) FROM capi_events_log") == 1
    assert (await log_row(seeded, dialog, 2))["event_time"] == first["event_time"]


async def test_a_transaction_of_decisions_wakes_the_senders_once(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    async with capi_wakeups(seeded) as wakeups:
        async with seeded.acquire() as conn, conn.transaction():
            for level in (1, 2, 3):
                await record_event(conn, dialog_id=dialog, direction_id=None, level=level, source="whatsapp",
                                   reached_at=datetime.now(UTC), contacts=dialog_contact)
        await wait_for(lambda: _count_is(wakeups, 1), what="the sender's wake-up")
        await record(seeded, await make_dialog(seeded), 1)  # the next notification marks the end
        await wait_for(lambda: _count_is(wakeups, 2), what="the second wake-up")


async def test_event_names_and_values_follow_the_direction(seeded: asyncpg.Pool) -> None:
    await seeded.execute(
        """UPDATE account_directions SET capi_event_names = '{"1": "LeadSubmitted", "3": "Purchase"}',
                  capi_event_values = '{"3": {"value": 120, "currency": "usd"}}', capi_test_event_code = 'TEST42'"""
    )
    dialog = await make_dialog(seeded)
    for level in (1, 2, 3):
        await record(seeded, dialog, level)
    rows = {lvl: await log_row(seeded, dialog, lvl) for lvl in (1, 2, 3)}
    assert [rows[n]["event_name"] for n in (1, 2, 3)] == ["LeadSubmitted", "CompleteRegistration", "Purchase"]
    assert rows[3]["request"]["data"][0]["custom_data"] == {"event_level": 3, "value": 120, "currency": "USD"}
    assert rows[1]["request"]["test_event_code"] == "TEST42"


async def test_the_user_token_is_used_when_the_ad_account_has_none(seeded: asyncpg.Pool) -> None:
    await seeded.execute("UPDATE ad_accounts SET access_token = NULL")
    assert await record(seeded, await make_dialog(seeded), 1) == "pending"


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ("UPDATE account_directions SET capi_enabled = false", "CAPI is disabled for direction 'implants'"),
        ("UPDATE account_directions SET pixel_id = NULL", "direction 'implants' has no pixel_id"),
        ("UPDATE ad_accounts SET access_token = NULL; UPDATE user_accounts SET access_token = NULL",
         "no Meta access token"),
        ("UPDATE leads SET ctwa_clid = NULL", "no click id: the lead has no ctwa_clid"),
    ],
)
async def test_a_level_that_cannot_be_sent_is_skipped_with_the_reason(
    seeded: asyncpg.Pool, change: str, reason: str
) -> None:
    dialog = await make_dialog(seeded)
    await seeded.execute(change)
    assert await record(seeded, dialog, 1) == "skipped"
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "skipped" and reason in row["error"]
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == 0


async def test_a_dialog_without_direction_is_skipped(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded, direction=None)
    assert await record(seeded, dialog, 1) == "skipped"
    row = await log_row(seeded, dialog, 1)
    assert row["error"].startswith("no direction") and row["event_name"] == "Lead"


async def test_the_callers_skip_reason_wins(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    assert await record(seeded, dialog, 3, skip_reason="level 3 came from an operator note") == "skipped"
    assert (await log_row(seeded, dialog, 3))["error"] == "level 3 came from an operator note"


async def test_a_crm_entity_without_a_dialog_is_one_skipped_decision_per_level(seeded: asyncpg.Pool) -> None:
    entity = "amocrm:amo-main:lead:123"
    kwargs: dict[str, Any] = {"direction_id": "implants", "source": "crm", "crm_entity": entity,
                              "contact_phone": "8 916 000-11-22"}
    assert await record(seeded, None, 2, **dict(kwargs)) == "skipped"
    assert await record(seeded, None, 2, **dict(kwargs)) is None
    row = await seeded.fetchrow("SELECT * FROM capi_events_log")
    assert row["crm_entity"] == entity and row["source"] == "crm" and "no click id" in row["error"]
    assert row["contact_phone"] == "79160001122"
    assert row["event_id"] == event_id_for(await installation_id(seeded), dialog_id=None, direction_id="implants",
                                           crm_entity=entity, level=2)


async def test_a_decision_needs_a_dialog_or_an_entity(seeded: asyncpg.Pool) -> None:
    with pytest.raises(ValueError, match="dialog_id or a crm_entity"):
        await record(seeded, None, 1, direction_id="implants")


async def test_nothing_is_recorded_when_the_callers_transaction_rolls_back(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    with pytest.raises(RuntimeError):
        async with seeded.acquire() as conn, conn.transaction():
            await record_event(conn, dialog_id=dialog, direction_id=None, level=1, source="whatsapp",
                               reached_at=datetime.now(UTC), contacts=dialog_contact)
            raise RuntimeError("the caller failed")
    assert await seeded.fetchval("SELECT count(*) FROM capi_events_log") == 0
    assert await seeded.fetchval("SELECT count(*) FROM jobs") == 0


async def test_recorders_do_not_wait_for_each_other_and_the_sender_is_woken_at_commit(
    seeded: asyncpg.Pool,
) -> None:
    first, second = await make_dialog(seeded), await make_dialog(seeded)
    await record(seeded, first, 1)
    async with capi_wakeups(seeded) as wakeups:
        async with seeded.acquire() as conn, conn.transaction():
            await record_event(conn, dialog_id=first, direction_id=None, level=2, source="whatsapp",
                               reached_at=datetime.now(UTC), contacts=dialog_contact)
            # another dialog's transaction records and commits meanwhile, without waiting for this one
            assert await asyncio.wait_for(record(seeded, second, 1), 2) == "pending"
            # its commit woke the senders; this uncommitted transaction has not (its row is not visible)
            await wait_for(lambda: _count_is(wakeups, 1), what="the committed recorder's wake-up")
        await wait_for(lambda: _count_is(wakeups, 2), what="the wake-up at this transaction's commit")


async def test_two_installations_never_share_an_event_id(seeded: asyncpg.Pool, tmp_path: Path) -> None:
    # a second installation: its own database, migrated from nothing, with the same dialog ids
    async with fresh_database(tmp_path) as other_dsn:
        conn = await asyncpg.connect(other_dsn)
        try:
            await migrate(conn)
            await migrate(conn)  # a second migrate keeps the installation's id
            other = await installation_id(conn)
            assert await conn.fetchval("SELECT count(*) FROM installation") == 1
        finally:
            await conn.close()
    ours = await installation_id(seeded)
    assert ours != other
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    stored = (await log_row(seeded, dialog, 1))["event_id"]
    assert stored == event_id_for(ours, dialog_id=dialog, direction_id=None, crm_entity=None, level=1)
    assert stored != event_id_for(other, dialog_id=dialog, direction_id=None, crm_entity=None, level=1)
