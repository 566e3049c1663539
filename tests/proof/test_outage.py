"""Scenario 2: Meta answers 503 and times out for a while; afterwards every event is delivered once
and the requests during the outage stay within the backoff bound. Meta timing out after accepting
is the measured at-least-once window. Long version: `python -m scripts.proof.outage`."""

from __future__ import annotations

from pathlib import Path

from tests.proof.outage import OutageParams, attempts_bound, run_outage


def test_the_backoff_bound_counts_attempts_under_doubling_delays() -> None:
    assert attempts_bound(0.1, 0.5, 4) == 1
    assert attempts_bound(8, 0.5, 4) == 5  # tries at 0, .45, 1.35, 3.15, 6.75
    assert attempts_bound(60, 0.5, 4) == 5 + int((60 - 6.75) // 3.6)


async def test_after_a_meta_outage_every_event_is_delivered_once_without_a_retry_storm(workdir: Path) -> None:
    report = await run_outage(OutageParams(), workdir)
    print(report.render())
    assert not report.problems, report.render()
    late = report.figures["phase B: events Meta accepted but answered after our timeout"]
    assert report.figures["duplicates by event_id"] == late
