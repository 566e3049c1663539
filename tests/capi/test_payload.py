"""The event and request shapes Meta documents for Click-to-WhatsApp (business messaging)."""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, datetime

from capi.payload import (
    EventFacts,
    audit_request,
    build_event,
    event_value_for,
    request_body,
)


def _facts(**kw: object) -> EventFacts:
    values: dict[str, object] = {
        "event_name": "LeadSubmitted", "event_time": datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC),
        "event_id": "evt-1", "level": 2, "ctwa_clid": "ARAkLk", "whatsapp_business_account_id": "1029384756",
        "phone": "8 916 123-45-67", "default_region": "RU",
    }
    values.update(kw)
    return EventFacts(**values)  # type: ignore[arg-type]


def test_event_carries_what_meta_requires_for_whatsapp_with_hashed_phone_and_raw_ids() -> None:
    event = build_event(_facts(email="Ann@Example.com", value=100, currency="usd"))
    assert event == {
        "event_name": "LeadSubmitted",
        "event_time": 1767323045,
        "event_id": "evt-1",
        "action_source": "business_messaging",
        "messaging_channel": "whatsapp",
        "user_data": {
            "ctwa_clid": "ARAkLk",
            "whatsapp_business_account_id": "1029384756",
            "ph": [hashlib.sha256(b"79161234567").hexdigest()],
            "em": [hashlib.sha256(b"ann@example.com").hexdigest()],
        },
        "custom_data": {"event_level": 2, "value": 100, "currency": "USD"},
    }


def test_optional_parts_are_left_out_when_unknown() -> None:
    event = build_event(_facts(phone=None, whatsapp_business_account_id=None))
    assert event["user_data"] == {"ctwa_clid": "ARAkLk"}
    assert event["custom_data"] == {"event_level": 2}


def test_event_values_come_from_the_direction() -> None:
    assert event_value_for({"3": {"value": 250, "currency": "eur"}}, 3) == (250.0, "EUR")
    assert event_value_for({"3": {"value": 250, "currency": "eur"}}, 2) == (None, None)


def test_request_body_has_token_partner_and_test_code_in_the_body() -> None:
    events = [json.dumps(build_event(_facts(event_id=f"e{i}"))) for i in range(3)]
    body = json.loads(request_body(events, access_token="EAAtoken", partner_agent="qualibot",
                                   test_event_code="TEST123"))
    assert [e["event_id"] for e in body["data"]] == ["e0", "e1", "e2"]
    assert body["access_token"] == "EAAtoken"
    assert body["partner_agent"] == "qualibot" and body["test_event_code"] == "TEST123"
    plain = json.loads(request_body(events[:1], access_token="t", partner_agent=None, test_event_code=None))
    assert set(plain) == {"data", "access_token"}


def test_the_audit_copy_has_no_token() -> None:
    stored = audit_request(build_event(_facts()), "TEST1")
    assert stored["test_event_code"] == "TEST1" and "access_token" not in json.dumps(stored)
