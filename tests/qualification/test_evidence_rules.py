"""Issue 19's evidence rules: the proof, not the dialog; schema limits strict mode accepts; an unsure
level held for review; the model's reasoning stored without the client's personal data."""

from __future__ import annotations

import re
from typing import Any

import openai
import pytest

from qualification.prompt import Transcript, TranscriptMessage
from qualification.verdict import MAX_EVIDENCE, MAX_REASONING_CHARS, Verdict, accept, hold_unsure, masked_reasoning

CHAT = Transcript([
    TranscriptMessage(1, "client", "Здравствуйте"),
    TranscriptMessage(2, "client", "Сколько стоит отбеливание?"),
    TranscriptMessage(3, "bot", "18 000 ₽. Записать вас на четверг?"),
])
LONG = Transcript([TranscriptMessage(n, "client" if n % 2 else "bot", f"message {n}") for n in range(1, 21)])


def _claim(ids: list[int], confidence: float | None = None) -> Verdict:
    return Verdict(is_interested=True, is_qualified=True, is_scheduled=True, evidence_message_ids=ids,
                   confidence=confidence, reasoning="r")


def test_citing_every_client_message_is_the_dialog_wholesale() -> None:
    # what SmolLM2 did with "Здравствуйте" / "Сколько стоит отбеливание?" (issue 19)
    got = accept(_claim([1, 2]), CHAT)
    assert got.level == 0 and "every client message" in (got.rejected or "")
    got = accept(_claim([1, 2, 3]), CHAT)
    assert got.level == 0 and "every client message" in (got.rejected or "")


def test_more_than_a_few_ids_are_refused_even_when_they_are_the_client_s() -> None:
    odd = [n for n in range(1, 21) if n % 2][: MAX_EVIDENCE + 1]
    got = accept(_claim(odd), LONG)
    assert got.level == 0 and f"more than {MAX_EVIDENCE}" in (got.rejected or "")
    assert accept(_claim(odd[:MAX_EVIDENCE]), LONG).level == 3


# OpenAI's "Supported schemas" (platform.openai.com/docs/guides/structured-outputs, section "Supported
# properties"), as read for this issue: strings take pattern and format, numbers minimum/maximum
# (exclusive ones and multipleOf too), arrays minItems/maxItems; minLength/maxLength are not listed.
SUPPORTED = {"type", "properties", "required", "additionalProperties", "items", "description", "title",
             "anyOf", "enum", "const", "$defs", "$ref", "pattern", "format", "minimum", "maximum",
             "exclusiveMinimum", "exclusiveMaximum", "multipleOf", "minItems", "maxItems"}


def _keywords(schema: Any) -> set[str]:
    if isinstance(schema, dict):
        found = set(schema)
        for key, value in schema.items():
            if key == "properties":
                for prop in value.values():
                    found |= _keywords(prop)
            elif isinstance(value, dict | list):
                found |= _keywords(value)
        return found
    if isinstance(schema, list):
        return set().union(*(_keywords(x) for x in schema)) if schema else set()
    return set()


def test_the_schema_limits_lengths_in_keywords_strict_mode_accepts() -> None:
    schema = openai.pydantic_function_tool(Verdict)["function"]["parameters"]  # what `ask` sends
    assert _keywords(schema) <= SUPPORTED
    props = schema["properties"]
    assert props["evidence_message_ids"]["maxItems"] == MAX_EVIDENCE
    reasoning = re.compile(props["reasoning"]["pattern"])
    assert reasoning.match("Booked Tuesday, answers fit.") and not reasoning.match("x" * MAX_REASONING_CHARS)
    assert not reasoning.match('said "yes"') and not reasoning.match("a\\b")  # JSON-safe in llama.cpp's grammar
    assert props["confidence"]["maximum"] == 1
    assert set(schema["required"]) == set(props) and schema["additionalProperties"] is False


@pytest.mark.parametrize(("confidence", "threshold", "level", "held"), [
    (0.9, 0.7, 3, None), (0.6, 0.7, 0, 3), (None, 0.7, 0, 3), (0.1, 0.0, 3, None),
])
def test_an_unsure_level_is_held(confidence: float | None, threshold: float, level: int, held: int | None) -> None:
    got = hold_unsure(accept(_claim([2], confidence), CHAT), confidence, threshold)
    assert (got.level, got.held) == (level, held)


def test_level_1_is_never_held() -> None:
    no_claim = Verdict(is_interested=True, is_qualified=False, is_scheduled=False, evidence_message_ids=[],
                       confidence=0.1, reasoning="r")
    assert hold_unsure(accept(no_claim, CHAT), 0.1, 0.9).held is None


@pytest.mark.parametrize(("client", "reasoning", "gone"), [
    ("Меня зовут Ольга Петрова, тел. 8 916 123-45-67", "Клиентка Ольга Петрова (8 916 123-45-67) готова",
     ["Ольга", "Петрова", "123"]),
    ("Sou a Joana Ribeiro, joana.r@mail.com", "Joana Ribeiro, joana.r@mail.com, quer agendar",
     ["Joana", "Ribeiro", "mail.com"]),
    ("Soy Carlos, vivo en Calle Alcalá 45", "Carlos vive en Calle Alcalá y dijo «quiero cita el lunes»",
     ["Carlos", "Alcalá", "quiero cita"]),
])
def test_the_stored_reasoning_keeps_no_personal_data(client: str, reasoning: str, gone: list[str]) -> None:
    transcript = Transcript([TranscriptMessage(1, "client", client), TranscriptMessage(2, "client", "ok")])
    stored = masked_reasoning(reasoning, transcript)
    for text in gone:
        assert text not in stored, stored
    assert len(masked_reasoning("x" * 5000, transcript)) == MAX_REASONING_CHARS
