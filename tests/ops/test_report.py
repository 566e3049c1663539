"""`qualibot report funnel | readiness | errors`: formats, filters, the empty case, exit codes."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import os
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tests.ops.conftest import Qualibot, add_events
from tests.seed import PIXEL_ID, seed

ROOT = Path(__file__).resolve().parents[2]
FUNNEL_HEADER = "day,direction_id,pixel_id,event_level,event_name,success,error,skipped,pending,total"


async def seeded_funnel(db: asyncpg.Pool) -> None:
    await seed(db)
    await add_events(db, 3, at=datetime(2026, 3, 1, 9, tzinfo=UTC))
    await add_events(db, 1, status="error", at=datetime(2026, 3, 1, 10, tzinfo=UTC))
    await add_events(db, 2, level=2, at=datetime(2026, 3, 2, 9, tzinfo=UTC))


async def test_funnel_as_a_table(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    await seeded_funnel(db)
    run = await qualibot("report", "funnel")
    assert run.code == 0, run.err
    lines = run.out.splitlines()
    assert lines[0].split() == FUNNEL_HEADER.split(",")
    assert set(lines[1]) <= {"-", " "}
    assert lines[2].split() == ["2026-03-01", "implants", PIXEL_ID, "1", "Lead", "3", "1", "0", "0", "4"]
    assert lines[3].split() == ["2026-03-02", "implants", PIXEL_ID, "2", "CompleteRegistration", "2", "0", "0",
                                "0", "2"]
    assert len(lines) == 4


async def test_funnel_as_json_and_csv(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    await seeded_funnel(db)
    run = await qualibot("report", "funnel", "--format", "json")
    assert run.code == 0
    assert json.loads(run.out) == [
        {"day": "2026-03-01", "direction_id": "implants", "pixel_id": PIXEL_ID, "event_level": 1,
         "event_name": "Lead", "success": 3, "error": 1, "skipped": 0, "pending": 0, "total": 4},
        {"day": "2026-03-02", "direction_id": "implants", "pixel_id": PIXEL_ID, "event_level": 2,
         "event_name": "CompleteRegistration", "success": 2, "error": 0, "skipped": 0, "pending": 0, "total": 2},
    ]
    run = await qualibot("report", "funnel", "--format", "csv")
    assert run.code == 0
    rows = list(csv.reader(io.StringIO(run.out)))
    assert rows[0] == FUNNEL_HEADER.split(",")
    assert rows[1] == ["2026-03-01", "implants", PIXEL_ID, "1", "Lead", "3", "1", "0", "0", "4"]
    assert len(rows) == 3


async def test_filters_by_direction_and_since(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    await seeded_funnel(db)
    run = await qualibot("report", "funnel", "--since", "2026-03-02", "--format", "json")
    assert [r["day"] for r in json.loads(run.out)] == ["2026-03-02"]
    run = await qualibot("report", "funnel", "--direction", "nowhere")
    assert (run.code, run.out) == (0, "no events yet (direction nowhere)\n")


async def test_empty_database_prints_no_events_yet_an_empty_list_or_a_header(
    db: asyncpg.Pool, qualibot: Qualibot
) -> None:
    table = await qualibot("report", "funnel")
    as_json = await qualibot("report", "funnel", "--format", "json")
    as_csv = await qualibot("report", "funnel", "--format", "csv")
    assert (table.code, table.out) == (0, "no events yet\n")
    assert (as_json.code, json.loads(as_json.out)) == (0, [])
    assert (as_csv.code, as_csv.out) == (0, FUNNEL_HEADER + "\n")
    errors = await qualibot("report", "errors", "--since", "2026-01-01")
    assert (errors.code, errors.out) == (0, "no events yet in error (since 2026-01-01)\n")
    readiness = await qualibot("report", "readiness")
    assert readiness.code == 0 and readiness.out.startswith("no directions configured yet")


async def test_readiness_report(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    await seed(db)
    await add_events(db, 50, level=1)
    await add_events(db, 7, level=2)
    run = await qualibot("report", "readiness", "--direction", "implants", "--format", "json")
    assert run.code == 0
    rows = json.loads(run.out)
    assert [(r["event_name"], r["successes_7d"], r["ready"]) for r in rows] == [
        ("LeadSubmitted", 50, True), ("QualifiedLead", 7, False), ("InitiateCheckout", 0, False),
    ]
    assert rows[0]["optimise_for_event"] == "LeadSubmitted"
    table = await qualibot("report", "readiness")
    assert "optimise for LeadSubmitted; move up to QualifiedLead" in table.out
    assert "not ready: 43 more in 7 days needed" in table.out


async def test_errors_report_shows_metas_message_and_the_hint_newest_first(
    db: asyncpg.Pool, qualibot: Qualibot
) -> None:
    await seed(db)
    now = datetime.now(UTC)
    response = {"error": {"message": "Invalid parameter", "code": 100, "error_subcode": 2804066}}
    hint = "Meta accepts only these event names for Click-to-WhatsApp (business_messaging) events: " + "x" * 120
    await add_events(db, 1, status="error", error="Invalid OAuth access token", at=now - timedelta(hours=3),
                     response={"error": {"message": "Invalid OAuth access token", "code": 190}})
    await add_events(db, 1, status="error", error="Invalid parameter", hint=hint, response=response, at=now)
    await add_events(db, 5, status="success", at=now)

    run = await qualibot("report", "errors", "--format", "json")
    rows = json.loads(run.out)
    assert [(r["error"], r["meta_code"], r["meta_subcode"]) for r in rows] == [
        ("Invalid parameter", "100", "2804066"), ("Invalid OAuth access token", "190", None),
    ]
    assert rows[0]["hint"] == hint  # machine formats keep the whole text
    table = await qualibot("report", "errors")
    assert table.code == 0
    assert table.out.index("Invalid parameter") < table.out.index("Invalid OAuth access token")
    assert "Meta accepts only these event names" in table.out and hint not in table.out  # cut to fit
    limited = await qualibot("report", "errors", "--limit", "1", "--format", "csv")
    assert len(limited.out.splitlines()) == 2


async def test_bad_arguments_exit_2_naming_the_flag(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    run = await qualibot("report", "funnel", "--since", "yesterday")
    assert run.code == 2 and "--since" in run.err and "YYYY-MM-DD" in run.err and run.out == ""
    run = await qualibot("report", "readiness", "--since", "2026-01-01")
    assert run.code == 2 and "--since does not apply" in run.err
    run = await qualibot("report", "errors", "--limit", "0")
    assert run.code == 2 and "--limit" in run.err


async def test_database_unavailable_exits_1_with_a_clear_message(
    qualibot: Qualibot, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/nothing")
    run = await qualibot("report", "funnel")
    assert run.code == 1 and "database unavailable" in run.err and run.out == ""


async def test_the_installed_command_prints_json(db: asyncpg.Pool, database_url: str) -> None:
    await seeded_funnel(db)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", "report", "funnel", "--format", "json", cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode == 0, err.decode()
    assert [r["total"] for r in json.loads(out)] == [4, 2]
