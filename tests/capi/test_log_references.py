"""capi_events_log's references to directions and dialogs (migration 022): kept by triggers on the
referenced tables, not checked row by row on each insert."""

from __future__ import annotations

import asyncpg
import pytest

from tests.capi.conftest import log_row, make_dialog, record


async def test_deleting_a_dialog_keeps_its_events_with_the_reference_cleared(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    assert await record(seeded, dialog, 1) == "pending"
    event_id = (await log_row(seeded, dialog, 1))["event_id"]

    await seeded.execute("DELETE FROM dialog_analysis WHERE id = $1", dialog)

    row = await seeded.fetchrow("SELECT dialog_analysis_id, direction_id FROM capi_events_log WHERE event_id = $1",
                                event_id)
    assert row is not None and row["dialog_analysis_id"] is None and row["direction_id"] == "implants"


async def test_deleting_a_direction_keeps_its_events_with_the_reference_cleared(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    assert await record(seeded, dialog, 1) == "pending"

    await seeded.execute("DELETE FROM account_directions WHERE id = 'implants'")

    row = await log_row(seeded, dialog, 1)
    assert row["direction_id"] is None
    funnel = await seeded.fetch("SELECT direction_id, pending FROM capi_funnel_daily")
    assert [(r["direction_id"], r["pending"]) for r in funnel] == [(None, 1)]  # the rollup moved it too


async def test_a_referenced_id_cannot_change_and_an_unreferenced_one_can(seeded: asyncpg.Pool) -> None:
    dialog = await make_dialog(seeded)
    other = await make_dialog(seeded)
    assert await record(seeded, dialog, 1) == "pending"

    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still referenced from capi_events_log"):
        await seeded.execute("UPDATE dialog_analysis SET id = id + 1000000 WHERE id = $1", dialog)
    with pytest.raises(asyncpg.ForeignKeyViolationError, match="still referenced from capi_events_log"):
        await seeded.execute("UPDATE account_directions SET id = 'implants-2' WHERE id = 'implants'")

    await seeded.execute("UPDATE dialog_analysis SET id = id + 1000000 WHERE id = $1", other)
    assert await seeded.fetchval("SELECT count(*) FROM dialog_analysis WHERE id = $1", other + 1000000) == 1


async def test_recording_a_decision_does_not_lock_the_directions_row(seeded: asyncpg.Pool) -> None:
    """With the foreign key, each decision's transaction held a share lock on its direction's row
    until it committed, so every concurrent decision of one direction shared that lock."""
    dialog = await make_dialog(seeded)
    async with seeded.acquire() as recording, recording.transaction():
        await recording.execute(
            """INSERT INTO capi_events_log (direction_id, dialog_analysis_id, event_name, event_level, event_id,
                                            source, status)
               VALUES ('implants', $1, 'LeadSubmitted', 1, 'e-lock', 'whatsapp', 'pending')""", dialog)
        async with seeded.acquire() as other, other.transaction():
            # a key-share lock held by `recording` would refuse this at once
            locked = await other.fetchval(
                "SELECT id FROM account_directions WHERE id = 'implants' FOR UPDATE NOWAIT")
            assert locked == "implants"
