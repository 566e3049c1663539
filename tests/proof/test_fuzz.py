"""Scenario 5: generated and mutated webhook bodies never get a 5xx, and a rejected one writes
nothing. Long version (≥ 5,000 cases): `python -m scripts.proof.fuzz --cases 5000`."""

from __future__ import annotations

from pathlib import Path

from tests.proof.fuzzing import FuzzParams, run_fuzz


def test_fuzzed_webhooks_never_get_a_5xx_and_rejections_write_nothing(workdir: Path) -> None:
    report = run_fuzz(FuzzParams(cases=400), workdir)
    print(report.render())
    assert report.figures["cases"] >= 400
    assert not report.problems, report.render()
