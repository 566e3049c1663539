"""Meta's answers sorted into success / transient / permanent, with plain hints (reference §4)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from capi.errors import BUSINESS_MESSAGING_EVENT_NAMES
from capi.graph import interpret

FIXTURES = Path(__file__).parent / "fixtures" / "meta"


def _answer(status: int, code: int, subcode: int | None = None, **extra: object) -> tuple[str, bool]:
    error = {"message": "m", "type": "OAuthException", "code": code, **extra}
    if subcode is not None:
        error["error_subcode"] = subcode
    got = interpret(status, json.dumps({"error": error}).encode(), 5)
    assert got.error is not None
    return got.kind, got.error.request_wide


@pytest.mark.parametrize("code", [1, 2, 4, 17, 341, 368, 613, 21009, 80000, 80004, 80014])
def test_throttling_and_service_errors_are_transient(code: int) -> None:
    assert _answer(400, code)[0] == "transient"


def test_is_transient_true_wins() -> None:
    assert _answer(400, 100, 2804087, is_transient=True)[0] == "transient"


@pytest.mark.parametrize("subcode", [2804003, 2804066, 2804087, 2804009, 2804019, None])
def test_parameter_errors_are_permanent_and_blame_an_event(subcode: int | None) -> None:
    assert _answer(400, 100, subcode) == ("permanent", False)


@pytest.mark.parametrize(("code", "subcode"), [(190, None), (190, 463), (100, 33), (3, None), (10, None),
                                               (200, None), (294, None), (2635, None), (102, None)])
def test_token_dataset_permission_and_version_errors_concern_the_whole_request(code: int, subcode: int | None) -> None:
    assert _answer(401, code, subcode) == ("permanent", True)


def test_unknown_codes_follow_the_http_status() -> None:
    assert _answer(503, 999)[0] == "transient"
    assert _answer(400, 999)[0] == "permanent"


@pytest.mark.parametrize(
    ("status", "raw", "kind"),
    [(200, b"<html>", "transient"), (502, b"Bad gateway", "transient"), (429, b"", "transient"),
     (404, b"<html>not found</html>", "permanent"), (200, b"[]", "transient"), (200, b"{}", "transient")],
)
def test_unreadable_answers_are_classified_not_raised(status: int, raw: bytes, kind: str) -> None:
    got = interpret(status, raw, 3, token="EAAsecret")
    assert got.kind == kind and got.response is not None


def test_an_unreadable_answer_never_stores_the_token() -> None:
    got = interpret(500, b"echo EAAsecret back", 1, token="EAAsecret")
    assert "EAAsecret" not in json.dumps(got.response)


def test_success_needs_events_received() -> None:
    success = interpret(200, (FIXTURES / "success.json").read_bytes(), 1)
    assert success.kind == "success" and success.events_received == 1 and success.fbtrace_id == "AbCdEfGhIjKlMnOp"


def test_fixture_shapes_and_hints() -> None:
    names = interpret(400, (FIXTURES / "error-2804066-invalid-event-type.json").read_bytes(), 1)
    assert names.error is not None and names.error.hint is not None
    assert all(n in names.error.hint for n in BUSINESS_MESSAGING_EVENT_NAMES) and "capi.event_names" in names.error.hint
    assert "Messaging Event Invalid Event Type" in names.error.message and names.fbtrace_id == "A1b2C3d4E5"
    token = interpret(401, (FIXTURES / "error-190-invalid-token.json").read_bytes(), 1)
    assert token.error is not None and token.error.hint and "access_token" in token.error.hint
    throttled = interpret(400, (FIXTURES / "error-17-throttled.json").read_bytes(), 1)
    assert throttled.kind == "transient" and throttled.error is not None and throttled.error.throttled
