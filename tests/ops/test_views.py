"""The audit views of migrations/006_views.sql count what is in capi_events_log."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

import asyncpg

from tests.ops.conftest import add_events
from tests.seed import PIXEL_ID, seed, tenant_config

OTHER_PIXEL = "5550001111"


def two_directions() -> dict[str, Any]:
    cfg = tenant_config()
    implants = cfg["accounts"][0]["directions"][0]
    veneers = {**implants, "id": "veneers", "name": "Veneers", "pixel_id": OTHER_PIXEL, "ad_ids": []}
    veneers["capi"] = {**implants["capi"], "event_names": {1: "LeadSubmitted", 2: "QualifiedLead"}}
    cfg["accounts"][0]["directions"].append(veneers)
    return cfg


def at(day: date, hour: int, minute: int = 0) -> datetime:
    return datetime(day.year, day.month, day.day, hour, minute, tzinfo=UTC)


async def test_funnel_counts_each_status_per_direction_dataset_utc_day_and_event(db: asyncpg.Pool) -> None:
    await seed(db, two_directions())
    d1, d2 = date(2026, 1, 10), date(2026, 1, 11)
    await add_events(db, 3, at=at(d1, 9))
    await add_events(db, 1, status="error", at=at(d1, 10))
    await add_events(db, 2, status="skipped", at=at(d1, 11))
    await add_events(db, 1, status="pending", at=at(d1, 23, 30))  # still Jan 10 in UTC
    await add_events(db, 2, level=2, at=at(d1, 12))
    await add_events(db, 1, at=at(d2, 0, 30))
    await add_events(db, 4, direction="veneers", pixel=OTHER_PIXEL, name="LeadSubmitted", at=at(d1, 9))

    async with db.acquire() as conn:
        await conn.execute("SET timezone = 'Asia/Vladivostok'")  # the session's zone does not move days
        rows = await conn.fetch(
            "SELECT direction_id, pixel_id, day, event_name, success, error, skipped, pending, total "
            "FROM capi_funnel_daily ORDER BY day, direction_id, event_level"
        )
        await conn.execute("RESET timezone")
    assert [tuple(r) for r in rows] == [
        ("implants", PIXEL_ID, d1, "Lead", 3, 1, 2, 1, 7),
        ("implants", PIXEL_ID, d1, "CompleteRegistration", 2, 0, 0, 0, 2),
        ("veneers", OTHER_PIXEL, d1, "LeadSubmitted", 4, 0, 0, 0, 4),
        ("implants", PIXEL_ID, d2, "Lead", 1, 0, 0, 0, 1),
    ]
    one = await db.fetch("SELECT total FROM capi_funnel_daily WHERE direction_id = 'implants' AND day >= $1", d2)
    assert [r["total"] for r in one] == [1]


async def test_readiness_counts_seven_days_of_successes_and_names_the_event_to_optimise_for(
    db: asyncpg.Pool,
) -> None:
    await seed(db, two_directions())
    now = datetime.now(UTC)
    await add_events(db, 50, level=1, at=now - timedelta(days=6))
    await add_events(db, 100, level=1, at=now - timedelta(days=8))  # too old to count
    await add_events(db, 20, level=1, status="error", at=now - timedelta(days=1))  # not a success
    await add_events(db, 49, level=2, at=now - timedelta(hours=1))
    await add_events(db, 10, level=3, at=now - timedelta(hours=1))

    async def readiness(direction: str) -> list[asyncpg.Record]:
        rows: list[asyncpg.Record] = await db.fetch(
            "SELECT * FROM capi_optimization_readiness WHERE direction_id = $1 ORDER BY event_level", direction
        )
        return rows

    rows = await readiness("implants")
    assert [(r["event_name"], r["successes_7d"], r["ready"]) for r in rows] == [
        ("LeadSubmitted", 50, True), ("QualifiedLead", 49, False), ("InitiateCheckout", 10, False),
    ]
    assert {r["optimise_for_event"] for r in rows} == {"LeadSubmitted"}
    assert rows[0]["recommendation"] == (
        "optimise for LeadSubmitted; move up to QualifiedLead when it reaches 50 in 7 days"
    )
    assert rows[1]["recommendation"] == "not ready: 1 more in 7 days needed"

    await add_events(db, 1, level=2)  # QualifiedLead reaches 50: move up
    rows = await readiness("implants")
    assert {r["optimise_for_level"] for r in rows} == {2}
    assert rows[0]["recommendation"] == "ready; QualifiedLead is ready too: optimise for it"
    assert rows[1]["recommendation"].startswith("optimise for QualifiedLead; move up to InitiateCheckout")

    idle = await readiness("veneers")  # configured names, default for the unconfigured level
    assert [(r["event_name"], r["successes_7d"], r["ready"]) for r in idle] == [
        ("LeadSubmitted", 0, False), ("QualifiedLead", 0, False), ("Schedule", 0, False),
    ]
    assert idle[0]["optimise_for_event"] is None
    assert idle[0]["recommendation"] == (
        "not ready: 50 more LeadSubmitted in 7 days needed; keep optimising for conversations"
    )


async def test_readiness_at_the_top_level(db: asyncpg.Pool) -> None:
    await seed(db)
    for level in (1, 2, 3):
        await add_events(db, 50, level=level)
    rows = await db.fetch("SELECT * FROM capi_optimization_readiness ORDER BY event_level")
    assert rows[2]["recommendation"] == "optimise for InitiateCheckout (the top level)"
    assert {r["optimise_for_event"] for r in rows} == {"InitiateCheckout"}


async def test_errors_recent_lists_only_errors_newest_first_with_metas_codes_and_the_hint(db: asyncpg.Pool) -> None:
    await seed(db)
    now = datetime.now(UTC)
    meta = {"error": {"message": "Invalid parameter", "code": 100, "error_subcode": 2804066,
                      "fbtrace_id": "A1b2C3d4E5"}}
    await add_events(db, 1, status="error", at=now - timedelta(hours=2), error="older", response=meta)
    await add_events(db, 1, status="error", at=now - timedelta(hours=1), error="Invalid parameter",
                     hint="Meta accepts only these event names ...", response=meta)
    await add_events(db, 3, status="success", at=now)
    await add_events(db, 1, status="skipped", at=now, error="no ctwa_clid")
    rows = await db.fetch("SELECT * FROM capi_errors_recent")
    assert [r["error"] for r in rows] == ["Invalid parameter", "older"]
    assert (rows[0]["meta_code"], rows[0]["meta_subcode"], rows[0]["fbtrace_id"]) == ("100", "2804066", "A1b2C3d4E5")
    assert rows[0]["hint"] == "Meta accepts only these event names ..."
