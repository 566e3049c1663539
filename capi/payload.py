"""The CAPI event for one (dialog, level), and the request body that carries a batch of them.

An event (reference meta-capi.md §2, Meta's WhatsApp sample):

    {"event_name": "LeadSubmitted", "event_time": 1703520000, "event_id": "…",
     "action_source": "business_messaging", "messaging_channel": "whatsapp",
     "user_data": {"ctwa_clid": "…", "whatsapp_business_account_id": "…", "ph": ["<sha256>"]},
     "custom_data": {"event_level": 1, "value": 100, "currency": "USD"}}

The request: `{"data": [...], "access_token": …, "partner_agent": …, "test_event_code": …}` posted as
JSON to `{graph}/{version}/{dataset}/events`; the token travels in the body, never in the URL.
The event is built once, when the decision is recorded, and stored in `capi_events_log.request`
(no secrets there); the sender splices the stored JSON text into the body unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from capi.normalize import hash_email, hash_phone

ACTION_SOURCE = "business_messaging"
MESSAGING_CHANNEL = "whatsapp"


@dataclass(frozen=True)
class EventFacts:
    """What one event says, before normalisation and hashing."""

    event_name: str
    event_time: datetime
    event_id: str
    level: int
    ctwa_clid: str | None = None
    whatsapp_business_account_id: str | None = None
    phone: str | None = None  # raw (any form) or an existing SHA-256 hex
    email: str | None = None
    default_region: str = "RU"
    value: float | None = None
    currency: str | None = None


def event_value_for(values: Mapping[str, Any] | None, level: int) -> tuple[float | None, str | None]:
    """`capi_event_values` {"2": {"value": 100, "currency": "USD"}} → (100.0, "USD") for level 2."""
    entry = (values or {}).get(str(level))
    if not isinstance(entry, Mapping):
        return None, None
    value, currency = entry.get("value"), entry.get("currency")
    if not isinstance(value, int | float) or isinstance(value, bool) or not isinstance(currency, str):
        return None, None
    return float(value), currency.upper()


def build_event(facts: EventFacts) -> dict[str, Any]:
    user_data: dict[str, Any] = {}
    if facts.ctwa_clid:
        user_data["ctwa_clid"] = facts.ctwa_clid
    if facts.whatsapp_business_account_id:
        user_data["whatsapp_business_account_id"] = facts.whatsapp_business_account_id
    ph = hash_phone(facts.phone, facts.default_region)
    if ph:
        user_data["ph"] = [ph]
    em = hash_email(facts.email)
    if em:
        user_data["em"] = [em]
    custom_data: dict[str, Any] = {"event_level": facts.level}
    if facts.value is not None and facts.currency:
        custom_data["value"] = facts.value
        custom_data["currency"] = facts.currency.upper()
    return {
        "event_name": facts.event_name,
        "event_time": int(facts.event_time.timestamp()),
        "event_id": facts.event_id,
        "action_source": ACTION_SOURCE,
        "messaging_channel": MESSAGING_CHANNEL,
        "user_data": user_data,
        "custom_data": custom_data,
    }


def audit_request(event: dict[str, Any], test_event_code: str | None) -> dict[str, Any]:
    """What `capi_events_log.request` holds: this event as it is sent, without the token."""
    stored: dict[str, Any] = {"data": [event]}
    if test_event_code:
        stored["test_event_code"] = test_event_code
    return stored


def request_body(
    events_json: Sequence[str], *, access_token: str, partner_agent: str | None, test_event_code: str | None
) -> bytes:
    """The JSON body for a batch, from events already serialised as JSON text (spliced, not re-encoded)."""
    extras: dict[str, str] = {"access_token": access_token}
    if partner_agent:
        extras["partner_agent"] = partner_agent
    if test_event_code:
        extras["test_event_code"] = test_event_code
    tail = json.dumps(extras, ensure_ascii=False, separators=(",", ":"))[1:]
    return ('{"data":[' + ",".join(events_json) + "]," + tail).encode("utf-8")
