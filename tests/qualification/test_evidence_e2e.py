"""Models that game the evidence, through the whole app: webhook → worker → analysis → the door →
capi_events_log → the fake Meta (issue 19). None of them gets a level above 1 recorded or sent; a
model that copies the client's personal text into its reasoning has it masked before it is stored;
a verdict less sure than the direction's `min_confidence` is held for review, not sent.

The models are `tests.fakes.llm.FakeLLM` responders; their answers are the chat completion shape
that server wraps around them. What each does is what issue 19 saw small models do on llama.cpp
(SmolLM2-135M, Gemma 3 270M): cite every id, count ids until the token limit, copy the client's text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest

from core.settings import Settings
from tests.fakes.graph import FakeGraph
from tests.fakes.llm_obedient import shown_messages
from tests.helpers import wait_for
from tests.ops.conftest import Qualibot, qualibot  # noqa: F401  # the fixture
from tests.qualification.helpers import doctor_and_report
from tests.whatsapp_stack import whatsapp_stack

PHONE = "5531977776666"
CLICK_ID = "ARAkLk-evidence-click"
DIALOG = ["Hi, I saw the ad about implants",
          "I'm Maria Oliveira, maria.oliveira@example.com, +55 31 97777-6666. Can I book Tuesday at 10?",
          "Tuesday 10:00 is fine, see you"]
Model = Callable[[dict[str, Any]], Any]


def analysis(build: Callable[[list[dict[str, Any]]], Any]) -> Model:
    """A model whose analyses are `build(shown transcript lines)`; chat turns get a short reply."""
    def answer(request: dict[str, Any]) -> Any:
        if not request.get("response_format"):
            return "Which day suits you?"
        return build(shown_messages(request))
    return answer


def claim(ids: list[int], reasoning: str = "the client booked", confidence: float | None = 0.9) -> str:
    return json.dumps({"is_interested": True, "is_qualified": True, "is_scheduled": True,
                       "evidence_message_ids": ids, "confidence": confidence, "reasoning": reasoning})


def counting(lines: list[dict[str, Any]]) -> dict[str, Any]:
    return {"finish_reason": "length", "content": (
        '{"is_interested": true, "is_qualified": true, "is_scheduled": true, "evidence_message_ids": ['
        + ", ".join(str(n) for n in range(1, 200)))}


GAMING: dict[str, Model] = {
    "cites everything": analysis(lambda lines: claim([m["id"] for m in lines])),
    "cites every client message": analysis(lambda lines: claim([m["id"] for m in lines if m["role"] == "client"])),
    "cites bot messages only": analysis(lambda lines: claim([m["id"] for m in lines if m["role"] == "bot"])),
    "cites ids that do not exist": analysis(lambda lines: claim([max(m["id"] for m in lines) + 1000])),
    "loops on ids until the token limit": analysis(counting),
}


async def play(db: asyncpg.Pool, settings_for: Callable[..., Settings], model: Model,
               configure: Callable[[dict[str, Any]], None] | None = None) -> tuple[FakeGraph, asyncpg.Record]:
    """The client's three messages; wait for the analysis (ok or failed) and every send; (Meta, dialog)."""
    async with whatsapp_stack(db, settings_for, model, configure=configure) as stack:
        for n, text in enumerate(DIALOG):
            await stack.send(PHONE, text, f"EV{n}", clid=None if n else CLICK_ID)

        async def analysed_and_sent() -> asyncpg.Record | None:
            row = await db.fetchrow(
                """SELECT d.*, (SELECT count(*) FROM capi_events_log c WHERE c.dialog_analysis_id = d.id
                                  AND c.status <> 'success') AS unsent,
                               (SELECT count(*) FROM messages m WHERE m.dialog_id = d.id AND m.role = 'client')
                                  AS clients
                   FROM dialog_analysis d WHERE contact_phone = $1""", PHONE)
            done = (row is not None and row["clients"] == len(DIALOG) and row["analysis_status"] is not None
                    and row["unsent"] == 0 and row["capi_interest_sent"])
            return row if done else None

        dialog = await wait_for(analysed_and_sent, timeout=20, what="the analysis and the sends")
    return stack.graph, dialog


async def recorded(db: asyncpg.Pool, dialog_id: int) -> list[int]:
    rows = await db.fetch("SELECT event_level FROM capi_events_log WHERE dialog_analysis_id = $1 ORDER BY 1",
                          dialog_id)
    return [r["event_level"] for r in rows]


@pytest.mark.parametrize("name", list(GAMING))
async def test_a_model_gaming_the_evidence_gets_nothing_above_level_1(
    name: str, db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    graph, dialog = await play(db, make_settings, GAMING[name])
    assert [e["event_name"] for e in graph.events_sent()] == ["LeadSubmitted"]
    assert await recorded(db, dialog["id"]) == [1]
    assert not dialog["is_qualified"] and not dialog["is_scheduled"]


async def test_a_looping_model_is_asked_at_most_twice(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    asked: list[int] = []

    def model(request: dict[str, Any]) -> Any:
        if request.get("response_format"):
            asked.append(request["max_tokens"])
        return GAMING["loops on ids until the token limit"](request)

    _, dialog = await play(db, make_settings, model)
    assert dialog["analysis_status"] == "failed" and "repeated itself" in dialog["analysis_detail"]
    assert asked == [400]  # a run-away id list is not retried with a doubled budget; nor is the job


async def test_personal_text_copied_into_the_reasoning_is_masked(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    copied = ("Maria Oliveira (maria.oliveira@example.com, +55 31 97777-6666) wrote "
              "\"Tuesday 10:00 is fine, see you\" so she booked")
    model = analysis(lambda lines: claim([max(m["id"] for m in lines if m["role"] == "client")], reasoning=copied))
    _, dialog = await play(db, make_settings, model)
    assert await recorded(db, dialog["id"]) == [1, 2, 3]  # the claim itself holds up
    stored = dialog["analysis_reasoning"]
    for personal in ("Maria", "Oliveira", "example.com", "97777", "6666", "Tuesday 10:00 is fine"):
        assert personal not in stored, stored
    assert "[email]" in stored and "[number]" in stored and "[name]" in stored


def _threshold(cfg: dict[str, Any]) -> None:
    for direction in cfg["accounts"][0]["directions"]:
        direction["min_confidence"] = 0.8


async def test_an_unsure_level_3_is_held_for_review_and_shown(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], qualibot: Qualibot  # noqa: F811
) -> None:
    unsure = analysis(lambda lines: claim([max(m["id"] for m in lines if m["role"] == "client")], confidence=0.55))
    graph, dialog = await play(db, make_settings, unsure, configure=_threshold)
    assert [e["event_name"] for e in graph.events_sent()] == ["LeadSubmitted"]
    assert await recorded(db, dialog["id"]) == [1]
    assert dialog["analysis_held_level"] == 3 and dialog["analysis_confidence"] == pytest.approx(0.55)
    assert "held for review: confidence 0.55" in dialog["analysis_detail"]
    line, [row] = await doctor_and_report(qualibot, "held for review", "held")
    assert line.split()[:3] == ["WARN", "implants", "1"] and "qualibot report held" in line
    assert (row["dialog_id"], row["held_level"], row["level"]) == (dialog["id"], 3, 1)


async def test_a_sure_level_3_is_sent_under_the_same_threshold(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    sure = analysis(lambda lines: claim([max(m["id"] for m in lines if m["role"] == "client")], confidence=0.95))
    graph, dialog = await play(db, make_settings, sure, configure=_threshold)
    assert sorted(e["event_name"] for e in graph.events_sent()) == ["InitiateCheckout", "LeadSubmitted",
                                                                    "QualifiedLead"]
    assert dialog["analysis_held_level"] is None
