"""Scenario 4: PostgreSQL stopped under load → 503s, never a 200 for something not stored; it
returns → the service recovers by itself; nothing acknowledged is lost.
Long version: `python -m scripts.proof.dbdown`."""

from __future__ import annotations

from pathlib import Path

from tests.proof.dbdown import DbDownParams, run_dbdown


async def test_a_database_outage_answers_503_and_recovers_without_losing_anything(workdir: Path) -> None:
    report = await run_dbdown(DbDownParams(), workdir)
    print(report.render())
    assert not report.problems, report.render()
