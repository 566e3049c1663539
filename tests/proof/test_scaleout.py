"""Scenario 3: every webhook 3 times over 2 HTTP processes, work done by 2 worker processes:
one stored message each, one event per (dialog, level). Long version: `python -m scripts.proof.scaleout`."""

from __future__ import annotations

from pathlib import Path

from tests.proof.scaleout import ScaleParams, run_scaleout


async def test_triple_deliveries_over_two_http_and_two_worker_processes_store_and_send_once(workdir: Path) -> None:
    report = await run_scaleout(ScaleParams(), workdir)
    print(report.render())
    assert not report.problems, report.render()
    assert report.figures["duplicates by event_id"] == 0
