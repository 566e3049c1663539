"""The one door: levels only rise, reaching N records every lower level, once each."""

from __future__ import annotations

import asyncio

import asyncpg
import pytest

from capi.jobs import CAPI_CHANNEL
from qualification.door import UnknownDialog, record_levels, record_unlinked
from tests.helpers import notifications, wait_for
from tests.qualification.helpers import dialog_row, make_dialog, recorded_levels


async def _record(db: asyncpg.Pool, dialog_id: int, levels: list[int], source: str = "whatsapp") -> list[int]:
    async with db.acquire() as conn, conn.transaction():
        return await record_levels(conn, dialog_id, levels, source)  # type: ignore[arg-type]


async def test_reaching_a_level_records_every_lower_one(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    async with notifications(seeded, CAPI_CHANNEL) as woken:
        assert await _record(seeded, dialog_id, [3]) == [1, 2, 3]
        # the sender was woken by the same transaction, at its commit
        await wait_for(lambda: _some(woken), what="the CAPI sender's wake-up")
    row = await dialog_row(seeded, dialog_id)
    assert row["is_interested"] and row["is_qualified"] and row["is_scheduled"]
    assert row["interest_reached_at"] is not None and row["scheduled_reached_at"] is not None
    events = await seeded.fetch(
        """SELECT event_level, event_name, status, source FROM capi_events_log
           WHERE dialog_analysis_id = $1 ORDER BY event_level""", dialog_id)
    assert [(e["event_level"], e["event_name"], e["status"], e["source"]) for e in events] == [
        (1, "LeadSubmitted", "pending", "whatsapp"),
        (2, "QualifiedLead", "pending", "whatsapp"),
        (3, "InitiateCheckout", "pending", "whatsapp"),
    ]


async def _some(items: list[str]) -> bool:
    return bool(items)


async def test_levels_only_rise_and_are_recorded_once(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    assert await _record(seeded, dialog_id, [1]) == [1]
    assert await _record(seeded, dialog_id, [1]) == []
    assert await _record(seeded, dialog_id, [2]) == [2]
    first = (await dialog_row(seeded, dialog_id))["interest_reached_at"]
    assert await _record(seeded, dialog_id, [1, 2]) == []  # a lower report changes nothing
    assert await _record(seeded, dialog_id, [3, 1]) == [3]
    row = await dialog_row(seeded, dialog_id)
    assert row["is_scheduled"] and row["interest_reached_at"] == first
    assert await recorded_levels(seeded, dialog_id) == [1, 2, 3]


async def test_without_a_click_id_the_levels_are_recorded_as_skipped(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded, clid=None)
    assert await _record(seeded, dialog_id, [2]) == [1, 2]
    rows = await seeded.fetch("SELECT status, error FROM capi_events_log WHERE dialog_analysis_id = $1",
                              dialog_id)
    assert {r["status"] for r in rows} == {"skipped"} and all("click id" in r["error"] for r in rows)
    assert (await dialog_row(seeded, dialog_id))["is_qualified"]


async def test_concurrent_reports_of_the_same_dialog_record_each_level_once(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    results = await asyncio.gather(*(_record(seeded, dialog_id, [lvl]) for lvl in (3, 2, 3, 1, 2, 3)))
    assert sorted(level for new in results for level in new) == [1, 2, 3]
    assert await recorded_levels(seeded, dialog_id) == [1, 2, 3]


async def test_the_caller_transaction_decides(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    with pytest.raises(RuntimeError):
        async with seeded.acquire() as conn, conn.transaction():
            await record_levels(conn, dialog_id, [2], "whatsapp")
            raise RuntimeError("the caller's later step failed")
    assert await recorded_levels(seeded, dialog_id) == []
    assert not (await dialog_row(seeded, dialog_id))["is_interested"]


async def test_the_crm_path_can_name_its_direction_and_entity(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    async with seeded.acquire() as conn, conn.transaction():
        new = await record_levels(conn, dialog_id, [2], "crm", direction_id="implants",
                                  crm_entity="amocrm:amo-main:lead:42")
    assert new == [1, 2]
    rows = await seeded.fetch("SELECT source, crm_entity FROM capi_events_log WHERE dialog_analysis_id = $1",
                              dialog_id)
    assert {(r["source"], r["crm_entity"]) for r in rows} == {("crm", "amocrm:amo-main:lead:42")}


async def test_bad_levels_and_unknown_dialogs_are_refused(seeded: asyncpg.Pool) -> None:
    dialog_id, _ = await make_dialog(seeded)
    async with seeded.acquire() as conn:
        with pytest.raises(ValueError, match="level"):
            await record_levels(conn, dialog_id, [4], "whatsapp")
        with pytest.raises(UnknownDialog):
            await record_levels(conn, dialog_id + 1000, [1], "whatsapp")
        assert await record_levels(conn, dialog_id, [], "whatsapp") == []
    assert await recorded_levels(seeded, dialog_id) == []


async def test_unlinked_crm_levels_are_skipped_rows_never_duplicated(seeded: asyncpg.Pool) -> None:
    for _ in range(2):
        async with seeded.acquire() as conn, conn.transaction():
            await record_unlinked(conn, direction_id="implants", levels=[2],
                                  crm_entity="bitrix24:b24-main:deal:7", reason="no WhatsApp lead with this phone")
    rows = await seeded.fetch(
        "SELECT event_level, status, error, dialog_analysis_id FROM capi_events_log ORDER BY event_level")
    assert [(r["event_level"], r["status"], r["dialog_analysis_id"]) for r in rows] == [
        (1, "skipped", None), (2, "skipped", None)]
    assert all("bitrix24:b24-main:deal:7" in r["error"] and "no WhatsApp lead" in r["error"] for r in rows)
