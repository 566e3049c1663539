"""The sync of one CRM entity: read it, match the CRM directions' fields, link it to WhatsApp
dialogs by phone, and hand the reached levels to the qualification door in one transaction.
The entity's first valid email becomes its WhatsApp leads' email in that same transaction, before
the levels, so the events recorded carry it (hashed as `em`, see capi.payload).

No database connection is held while the CRM is read (that can wait on the rate limiter)."""

from __future__ import annotations

from dataclasses import dataclass, field

import asyncpg

from capi.normalize import normalize_email
from core.context import AppContext
from core.logging import get_logger, mask_phone
from crm import amocrm, bitrix24
from crm.connections import Connection, CrmDirection, crm_directions, load_connection
from crm.entity import CrmRecord
from crm.linking import Links, find_links, normalize_all, store_email, unlinked_reason
from crm.matching import label_fields, levels_reached
from crm.ratelimit import RateLimiter
from crm.transport import host_of
from qualification import door
from qualification.dialogs import DialogRef

log = get_logger("crm.sync")


@dataclass
class SyncOutcome:
    """What one sync did (for logs and tests)."""

    gone: bool = False
    levels: dict[str, list[int]] = field(default_factory=dict)  # direction → levels reached
    dialogs: list[int] = field(default_factory=list)  # dialogs the levels were recorded for
    unlinked: bool = False
    emails_stored: int = 0  # WhatsApp leads whose email the CRM's changed


def crm_entity(connection: Connection, entity_type: str, entity_id: str) -> str:
    """How capi_events_log.crm_entity names a CRM entity: `amocrm:amo-main:lead:123`."""
    return f"{connection.type}:{connection.id}:{entity_type}:{entity_id}"


async def read_entity(
    ctx: AppContext, connection: Connection, entity_type: str, entity_id: str, directions: list[CrmDirection]
) -> CrmRecord | None:
    timeout, max_wait = ctx.settings.crm_timeout_seconds, ctx.settings.crm_max_queue_seconds
    if connection.type == "amocrm":
        if not connection.base_url or not connection.access_token:
            raise ValueError(f"amoCRM connection {connection.id} has no base_url or access_token")
        limiter = RateLimiter(ctx.pool, f"amocrm:{connection.id}", connection.rate)
        amo = amocrm.AmoClient(ctx.http, connection.base_url, connection.access_token, limiter, timeout, max_wait)
        return await amocrm.read_entity(amo, entity_type, entity_id)
    if not connection.rest_url:
        raise ValueError(f"Bitrix24 connection {connection.id} has no rest_url")
    # the bucket is the portal's, whoever's webhook URL is used
    limiter = RateLimiter(ctx.pool, f"bitrix24:{host_of(connection.rest_url)}", connection.rate)
    b24 = bitrix24.BitrixClient(ctx.http, connection.rest_url, limiter, timeout, max_wait)
    labels = label_fields(cfgs for d in directions for cfgs in d.fields.values())
    return await bitrix24.read_entity(b24, entity_type, entity_id, labels)


def first_email(raw: list[str]) -> str | None:
    """The first of the CRM's emails that is an address, normalised as Meta wants (trimmed,
    lower-cased); amoCRM and Bitrix24 list the main one first."""
    return next((e for e in map(normalize_email, raw) if e is not None), None)


def _applies(direction_id: str, dialog: DialogRef, crm_direction_ids: set[str]) -> bool:
    """A dialog already in one of this connection's CRM directions takes levels only from it;
    any other dialog (no direction, or a WhatsApp-sourced one) from every CRM direction."""
    return dialog.direction_id not in crm_direction_ids or dialog.direction_id == direction_id


async def record_reached(
    conn: asyncpg.Connection, connection: Connection, record: CrmRecord, reached: dict[str, list[int]],
    crm_ids: set[str], outcome: SyncOutcome,
) -> None:
    """Inside the caller's transaction: levels to every linked dialog, or skipped rows when the
    entity links to no dialog at all. `crm_ids` are all directions on this connection: a dialog
    owned by another of them is that direction's business (no row here, see `_applies`)."""
    entity = crm_entity(connection, record.entity_type, record.entity_id)
    phones = normalize_all(record.phones, connection.default_region)
    links: Links = await find_links(conn, connection.account_id, phones)
    for direction_id, levels in reached.items():
        dialogs = [d for d in links.dialogs if _applies(direction_id, d, crm_ids)]
        for dialog in dialogs:
            await door.record_levels(conn, dialog.id, levels, "crm", direction_id=direction_id, crm_entity=entity)
            outcome.dialogs.append(dialog.id)
        if not links.dialogs:
            await door.record_unlinked(conn, direction_id=direction_id, levels=levels, crm_entity=entity,
                                       reason=unlinked_reason(links))
            outcome.unlinked = True
        elif not dialogs:
            log.info("crm.dialog_in_other_direction", crm_entity_id=entity, direction=direction_id)
    log.info("crm.levels_recorded", crm_entity_id=entity, levels=reached, dialog_ids=sorted(set(outcome.dialogs)),
             phones=[mask_phone(p) for p in phones], unlinked=outcome.unlinked)


async def sync_entity(ctx: AppContext, connection_id: str, entity_type: str, entity_id: str) -> SyncOutcome:
    outcome = SyncOutcome()
    connection = await load_connection(ctx.pool, connection_id)
    if connection is None:
        log.warning("crm.sync_no_connection", connection=connection_id)
        return outcome
    directions = await crm_directions(ctx.pool, connection.id)
    if not directions:
        log.info("crm.sync_no_direction", connection=connection.id, entity_type=entity_type)
        return outcome
    entity = await read_entity(ctx, connection, entity_type, entity_id, directions)
    if entity is None:
        outcome.gone = True
        log.info("crm.entity_gone", crm_entity_id=crm_entity(connection, entity_type, entity_id))
        return outcome
    all_reached = {d.id: levels_reached(d.fields, entity) for d in directions}
    outcome.levels = {d: lv for d, lv in all_reached.items() if lv}
    email = first_email(entity.emails)
    if not outcome.levels:
        log.info("crm.no_level_reached", crm_entity_id=crm_entity(connection, entity_type, entity_id))
        if email is None:
            return outcome
    async with ctx.pool.acquire() as conn, conn.transaction():
        if email is not None:
            phones = normalize_all(entity.phones, connection.default_region)
            outcome.emails_stored = await store_email(conn, connection.account_id, phones, email)
        if outcome.levels:
            await record_reached(conn, connection, entity, outcome.levels, {d.id for d in directions}, outcome)
    return outcome
