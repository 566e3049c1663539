"""Every SQL example in docs/AUDIT.md runs, and the consistency checks find nothing on a sound log."""

from __future__ import annotations

import re
from pathlib import Path

import asyncpg

from tests.ops.conftest import add_events
from tests.seed import seed

DOC = Path(__file__).resolve().parents[2] / "docs" / "AUDIT.md"


def examples() -> list[str]:
    return re.findall(r"```sql\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


async def test_every_example_query_runs(db: asyncpg.Pool) -> None:
    await seed(db)
    dialog = await db.fetchval(
        """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, direction_id, is_interested,
                                        capi_interest_sent)
           VALUES ('clinic', 'clinic-main', '79160000001', 'implants', true, true) RETURNING id"""
    )
    await db.execute(
        """INSERT INTO capi_events_log (direction_id, dialog_analysis_id, pixel_id, event_name, event_level,
                                        event_id, source, status)
           VALUES ('implants', $1, '1234567890', 'Lead', 1, 'ev-1', 'whatsapp', 'success')""", dialog
    )
    await add_events(db, 2, status="error", error="Invalid parameter")
    await add_events(db, 1, status="skipped", error="no ctwa_clid")
    queries = examples()
    assert len(queries) >= 10
    results = [await db.fetch(q) for q in queries]
    consistency_checks = results[-2:]  # the doc says these return no rows
    assert consistency_checks == [[], []]
