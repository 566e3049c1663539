"""Scenario 1: SIGKILL midway; every accepted message stored once, every level sent once to Meta
(except the measured at-least-once window). Long version: `python -m scripts.proof.crash`."""

from __future__ import annotations

from pathlib import Path

from tests.proof.crash import CrashParams, run_crash


async def test_sigkills_midway_lose_nothing_and_send_each_level_once(workdir: Path) -> None:
    report = await run_crash(CrashParams(dialogs=30, per_dialog=10, kills=("graph", "random")), workdir)
    print(report.render())
    assert not report.problems, report.render()
    kills = report.figures["kills"]
    assert kills[0]["acked before kill"] < 300, "the first kill did not land midway"
    assert kills[0]["events in the held request"] > 0, "the first kill did not land in Meta's window"
