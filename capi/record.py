"""Turning one reached level into one capi_events_log row: the single door into the outbox.

Contract used by qualification.door: `record_event(conn, ...)` inside the caller's transaction.
The row is the decision: `pending` (the sender will deliver it) or `skipped` with the reason in
`error` and what to do in `hint`. At most one row per (dialog, level), or per (direction, CRM
entity, level) when there is no dialog: the unique indexes refuse a second, and `event_id` is
derived from that key and this installation's id (`core.migrate.installation_id`), so it is the
same however often the level is reported, and no other installation sending to the same dataset
makes it.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import asyncpg

from capi.hooks import DialogContact, DialogContacts
from capi.jobs import schedule_send
from capi.ledger import insert_decision
from capi.normalize import is_hashed
from capi.payload import EventFacts, audit_request, build_event, event_value_for
from capi.tenants import direction_for_event
from core.logging import get_logger
from core.metrics import CAPI_EVENTS
from core.migrate import installation_id
from core.phones import normalize_phone

log = get_logger("capi.record")

# the seed's name of a level when there is no direction to configure one
_DEFAULT_NAME_SQL = "SELECT capi_event_name(NULL, $1)"

def event_id_for(
    installation: uuid.UUID, *, dialog_id: int | None, direction_id: str | None, crm_entity: str | None,
    level: int,
) -> str:
    """UUIDv5 in the installation's namespace of (dialog, level), or of (direction, CRM entity,
    level) when there is no dialog: stable on every retry, never made by another installation."""
    key = f"dialog:{dialog_id}" if dialog_id is not None else f"crm:{direction_id}:{crm_entity}"
    return str(uuid.uuid5(installation, f"{key}:level:{level}"))


@dataclass(frozen=True)
class _Skip:
    reason: str
    hint: str | None = None


def _skip_reason(direction: asyncpg.Record | None, clid: str | None, has_dialog: bool) -> _Skip | None:
    if direction is None:
        return _Skip("no direction: the dialog belongs to no direction, so there is no dataset to report to",
                     "set default_direction on the WhatsApp instance or ad_ids on a direction")
    name = direction["id"]
    if not direction["capi_enabled"]:
        return _Skip(f"CAPI is disabled for direction {name!r}", "set capi.enabled: true to report levels")
    if not direction["pixel_id"]:
        return _Skip(f"direction {name!r} has no pixel_id (dataset)", "set pixel_id in the direction's config")
    if not direction["has_token"]:
        ad = f"ad account {direction['ad_account_id']!r}" if direction["ad_account_id"] else "an ad account"
        return _Skip(
            f"no Meta access token: neither {ad} nor account {direction['account_id']!r} has one",
            "set access_token on the ad account (or the account) and run `qualibot config apply`",
        )
    if not clid:
        what = "the lead has no ctwa_clid" if has_dialog else "no WhatsApp lead with a ctwa_clid for this entity"
        return _Skip(f"no click id: {what} (it did not come from a Click-to-WhatsApp ad)")
    return None


async def record_event(
    conn: asyncpg.Connection,
    *,
    dialog_id: int | None,
    direction_id: str | None,
    level: int,
    source: Literal["whatsapp", "crm"],
    reached_at: datetime,
    crm_entity: str | None = None,
    contact_phone: str | None = None,
    skip_reason: str | None = None,
    contacts: DialogContacts,
) -> str | None:
    """Insert the (dialog, level) decision: `pending` when it can be sent, else `skipped` with the
    reason in `error` (CAPI off, no pixel, no token, no click id, or the given `skip_reason`).
    The event name comes from the direction (SQL `capi_event_name`: else the seed's defaults);
    `event_id` is stable for (dialog, level) in this installation. ON CONFLICT DO
    NOTHING: returns the new row's status, or None when the decision already existed. A pending
    row schedules the sender. Runs inside the caller's transaction."""
    if level not in (1, 2, 3):
        raise ValueError(f"level must be 1, 2 or 3, not {level!r}")
    if dialog_id is None and not crm_entity:
        raise ValueError("record_event needs a dialog_id or a crm_entity: one of them makes the decision unique")
    if reached_at.tzinfo is None:
        reached_at = reached_at.replace(tzinfo=UTC)  # a naive time is taken as UTC
    d = await decide(conn, dialog_id=dialog_id, direction_id=direction_id, level=level, reached_at=reached_at,
                     crm_entity=crm_entity, contact_phone=contact_phone, skip_reason=skip_reason,
                     contacts=contacts)
    direction, skip, event, phone = d.direction, d.skip, d.event, d.phone
    status = "skipped" if skip else "pending"
    inserted = await insert_decision(
        conn, direction["id"] if direction else None, dialog_id, phone,
        direction["pixel_id"] if direction else None, event["event_name"], level, event["event_id"],
        reached_at, source, status, skip.reason if skip else None, skip.hint if skip else None,
        crm_entity, d.request,
    )
    if inserted is None:
        return None
    CAPI_EVENTS.labels(status, event["event_name"]).inc()
    log.info("capi.event_recorded", event_id=event["event_id"], dataset=direction["pixel_id"] if direction else None,
             level=level, status=status, reason=skip.reason if skip else None, source=source)
    if status == "pending":
        await schedule_send(conn)
    return str(inserted)


@dataclass(frozen=True)
class Decision:
    """What the facts in the database say about one (dialog, level) right now."""

    direction: asyncpg.Record | None
    skip: _Skip | None
    event: dict[str, Any]
    phone: str | None
    request: dict[str, Any]  # the audited request: the event and the test code, no token


async def decide(
    conn: asyncpg.Connection, *, dialog_id: int | None, direction_id: str | None, level: int,
    reached_at: datetime, crm_entity: str | None = None, contact_phone: str | None = None,
    skip_reason: str | None = None, event_id: str | None = None, contacts: DialogContacts,
) -> Decision:
    """Read the dialog's contact (through `contacts`) and the direction and decide: send (and what)
    or skip (and why). Used when a level is first recorded and again by `capi retry` after a fix,
    which passes the row's stored `event_id` (rows made before the installation id keep theirs)."""
    dialog = await contacts(conn, dialog_id) if dialog_id is not None else None
    if dialog_id is not None and dialog is None:
        raise LookupError(f"dialog {dialog_id} does not exist")
    direction_id = direction_id or (dialog.direction_id if dialog else None)
    direction = await direction_for_event(conn, direction_id, level) if direction_id else None
    name = direction["event_name"] if direction else await conn.fetchval(_DEFAULT_NAME_SQL, level)
    clid = dialog.ctwa_clid if dialog else None
    phone = contact_phone or (dialog.phone if dialog else None)
    region = (direction["default_region"] if direction else None) or "RU"
    if phone and not is_hashed(phone):
        phone = normalize_phone(phone, region) or phone
    skip = _Skip(skip_reason) if skip_reason else _skip_reason(direction, clid, dialog is not None)
    if event_id is None:
        event_id = event_id_for(await installation_id(conn), dialog_id=dialog_id, direction_id=direction_id,
                                crm_entity=crm_entity, level=level)
    event = _event(direction, dialog, name, level, reached_at, clid, phone, event_id)
    test_code = direction["capi_test_event_code"] if direction else None
    return Decision(direction, skip, event, phone, audit_request(event, test_code))


def _event(
    direction: asyncpg.Record | None, dialog: DialogContact | None, name: str, level: int, reached_at: datetime,
    clid: str | None, phone: str | None, event_id: str,
) -> dict[str, Any]:
    value, currency = event_value_for(direction["capi_event_values"] if direction else None, level)
    return build_event(EventFacts(
        event_name=name, event_time=reached_at, event_id=event_id, level=level,
        ctwa_clid=clid,
        whatsapp_business_account_id=direction["whatsapp_business_account_id"] if direction else None,
        phone=phone, email=dialog.email if dialog else None,
        default_region=(direction["default_region"] if direction else None) or "RU",
        value=value, currency=currency,
    ))
