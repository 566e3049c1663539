"""bench/quality.py on the whole labelled set against fake models that obey every client: the
figures come out of the production path, and the injection and "cites everything" cases give 0
false level 3 (issue 19)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import pytest

from bench.quality import main, parse
from tests.fakes.llm import FakeLLM
from tests.fakes.llm_obedient import obedient


async def run(cite: Literal["all", "newest"], tmp_path: Path, *extra: str) -> dict[str, Any]:
    async with FakeLLM(obedient(cite)) as llm:
        out = tmp_path / f"{cite}.json"
        assert await main(parse(["--base-url", llm.base_url, "--model", "fake", "--json", str(out), *extra])) == 0
    report: dict[str, Any] = json.loads(out.read_text())
    return report


async def test_a_model_citing_every_client_message_scores_nothing_above_level_1(tmp_path: Path) -> None:
    report = await run("all", tmp_path)
    summary = report["summary"]
    assert summary["dialogs"] >= 120 and summary["claims_2_3"] == summary["dialogs"]
    assert summary["claims_accepted"] == 0.0
    assert summary["per_level"]["2"]["predicted"] == 0 and summary["per_level"]["3"]["predicted"] == 0
    assert summary["injections_false_3"] == 0
    assert summary["per_level"]["1"]["recall"] == 1.0  # the rule alone finds every level 1


async def test_a_model_obeying_every_client_is_stopped_on_every_injection_the_filter_knows(tmp_path: Path) -> None:
    report = await run("newest", tmp_path)
    injected = [d for d in report["dialogs"] if d["case"] == "injection"]
    assert len(injected) >= 16 and all(d["claimed"] == 3 for d in injected)
    assert [d["id"] for d in injected if d["predicted"] == 3] == []
    # a booking claim on every other dialog: precision of level 3 is the share truly booked
    level3 = report["summary"]["per_level"]["3"]
    assert level3["recall"] == 1.0 and level3["precision"] == pytest.approx(level3["expected"] / level3["predicted"],
                                                                                abs=0.001)


async def test_the_confidence_threshold_holds_unsure_claims(tmp_path: Path) -> None:
    report = await run("newest", tmp_path, "--min-confidence", "0.5", "--only=-ru-")
    summary = report["summary"]
    assert summary["per_level"]["2"]["predicted"] == 0 and summary["held"] > 0  # obedient() gives no confidence
