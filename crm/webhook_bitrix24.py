"""Bitrix24 outbound webhooks: `event=ONCRMDEALUPDATE&data[FIELDS][ID]=759&auth[...]`.

The body names only the entity; the sync reads it through REST. `auth[application_token]` is
the proof it comes from the portal; it (and any OAuth token an app install adds) is never stored.
"""

from __future__ import annotations

import hmac
import re

from core.errors import BadInput
from crm.connections import Connection
from crm.form import Form, is_id, text
from crm.store import EntityEvent

EVENT = re.compile(r"ONCRM(DEAL|LEAD|CONTACT)(ADD|UPDATE|DELETE|RESTORE|MOVETOCATEGORY)")
SUPPORTED = "ONCRMDEAL*, ONCRMLEAD* or ONCRMCONTACT* (ADD, UPDATE, DELETE)"
AUTH_KEPT = ("domain", "member_id", "client_endpoint", "server_endpoint")


def token_matches(form: Form, connection: Connection) -> bool:
    given = (text(form, "auth", "application_token") or "").encode()
    expected = (connection.application_token or "").encode()
    return bool(expected) and hmac.compare_digest(expected, given)


def parse(form: Form) -> EntityEvent:
    event = text(form, "event")
    if event is None:
        raise BadInput(f"a Bitrix24 webhook carries `event` ({SUPPORTED}); this body has none", code="missing_event")
    match = EVENT.fullmatch(event.upper())
    if match is None:
        raise BadInput(code="unsupported_event", detail=f"event {event[:60]!r} is not synced; subscribe to {SUPPORTED}")
    entity_id = text(form, "data", "FIELDS", "ID")
    if entity_id is None or not is_id(entity_id):
        raise BadInput(code="missing_id", detail="data[FIELDS][ID] is missing or not a number")
    auth = form.get("auth")
    auth = auth if isinstance(auth, dict) else {}
    payload = {
        "event": event.upper(), "data": form.get("data"), "ts": form.get("ts"),
        "event_handler_id": form.get("event_handler_id"),
        "auth": {k: auth[k] for k in AUTH_KEPT if k in auth},
    }
    return EntityEvent(event=event.upper(), entity_type=match.group(1).lower(), entity_id=entity_id,
                       payload=payload, sync=match.group(2) != "DELETE")
