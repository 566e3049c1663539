"""Storing an Evolution message on receipt: one INSERT, committed before the webhook's 200.

Intake has two steps. This one is on the webhook's path and does as little as it can: the message
row is stored once per (instance, Evolution key id), with the chat, push name and ad referral the
drain needs, in one statement (one round trip, autocommit). A redelivery finds the row and writes
nothing (`duplicate`; telling that from an echo or a removed instance takes a second, read-only
look, on that rare path only); two concurrent deliveries of one message are settled by the unique index
(one inserts, the other waits for its commit and then writes nothing). The second step,
`bot.drain`, links stored messages to their lead and dialog in batches and debounces the dialog
jobs; a message is kept (dialog_id NULL) until it has, so nothing acknowledged is lost.

A `fromMe` upsert or a `send.message` (what was sent through Evolution's API: Chatwoot, a CRM widget)
is stored as the operator's, which pauses the bot (`bot.drain`), unless it is our own reply coming
back (`echo`, not stored): recognised by the key id Evolution's sendText answered with
(`messages.external_id`), a value no WhatsApp sender can choose. Evolution emits `send.message`
without waiting (`sendMessageWithTyping`, evolution-api 2.3.7 whatsapp.baileys.service.ts), so
the echo can overtake sendText's answer: until that answer is recorded, a recent reply of that
chat without an external id is matched by its text (only `fromMe` messages are compared, and no
client can send those). The instance is checked by the statement itself, not only by the 5-second
cache: an instance removed since its cached lookup stores nothing (`InstanceGone`, 404).
It runs on a connection kept out of the pool (`bot.connections`): the pool's reset on release
would be a second round trip.

Client messages (nearly all of them) are written by group commit (`bot.group_commit`): the
webhooks that arrive together share one multi-row INSERT, one transaction and one WAL flush, and
each 200 still follows the commit that holds its messages. A batch that fails is written again
one webhook at a time, each in its own transaction as before, so a bad message fails its own
webhook and not its neighbours.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.connections import PinnedConnections, is_connection_error
from bot.group_commit import GroupCommit
from bot.instances import Instance
from bot.parse import Message
from bot.referral import Referral
from core.errors import NotFound
from core.retries import retrying

DIALOG_JOB = "bot.dialog"
MAX_ATTEMPTS = 3
# group commit: two batches at a time, one written while the next one's statement runs
IN_FLIGHT = 2

_INSERT = """
    INSERT INTO messages (instance_name, message_id, role, text, media_type, sent_at,
                          contact, is_lid, push_name, referral, ad_opaque, lid)
    SELECT i.name, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12
    FROM whatsapp_instances i WHERE i.name = $1 {extra}
    ON CONFLICT (instance_name, message_id) DO NOTHING
    RETURNING id
"""
# a client message: stored unless already there (or its instance is gone: see WHY_NOT_SQL)
CLIENT_SQL = _INSERT.format(extra="")
# a fromMe or sent message: stored as the operator's unless it is our own reply coming back
OPERATOR_SQL = f"""
WITH echo AS (
    SELECT 1 FROM messages m JOIN dialog_analysis d ON d.id = m.dialog_id
    WHERE d.instance_name = $1 AND d.contact_phone = $7 AND m.role = 'bot'
      AND (m.external_id = $2 OR (m.external_id IS NULL AND m.text = $4
                                  AND m.created_at > now() - interval '1 hour'))
), ins AS ({_INSERT.format(extra="AND NOT EXISTS (SELECT 1 FROM echo)")})
SELECT id FROM ins
"""
# client messages of many webhooks in one statement; what it returns says which rows were new
BATCH_SQL = """
    INSERT INTO messages (instance_name, message_id, role, text, media_type, sent_at,
                          contact, is_lid, push_name, referral, ad_opaque, lid)
    SELECT i.name, t.message_id, 'client', t.text, t.media_type, t.sent_at,
           t.contact, t.is_lid, t.push_name, t.referral, t.ad_opaque, t.lid
    FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[], $6::text[], $7::bool[],
                $8::text[], $9::jsonb[], $10::bool[], $11::text[])
         WITH ORDINALITY AS t(instance_name, message_id, text, media_type, sent_at, contact, is_lid,
                              push_name, referral, ad_opaque, lid, n)
    JOIN whatsapp_instances i ON i.name = t.instance_name
    ORDER BY t.n
    ON CONFLICT (instance_name, message_id) DO NOTHING
    RETURNING instance_name, message_id
"""
_ROLE = 2  # the one column of `_statement`'s arguments that BATCH_SQL does not take (always client)
# the rare second look when nothing was inserted: a redelivery, our echo, or a removed instance
WHY_NOT_SQL = """
SELECT EXISTS (SELECT 1 FROM whatsapp_instances WHERE name = $1) AS known,
       EXISTS (SELECT 1 FROM messages WHERE instance_name = $1 AND message_id = $2) AS stored
"""


class InstanceGone(NotFound):
    """The instance was removed from the configuration after the webhook's cached lookup."""

    code = "unknown_instance"


@dataclass(frozen=True)
class Stored:
    outcome: str  # stored | duplicate | echo
    message_id: str


def referral_record(ref: Referral | None) -> dict[str, Any] | None:
    """What the message keeps of its ad referral, for the drain to give its lead."""
    if ref is None:
        return None
    return {"ctwa_clid": ref.ctwa_clid, "source_id": ref.source_id, "source_url": ref.source_url,
            "title": ref.title, "source_type": ref.source_type, "record": ref.record()}


def _statement(instance: Instance, m: Message) -> tuple[str, list[Any]]:
    role = "operator" if m.from_me else "client"
    args = [instance.name, m.message_id, role, m.text, m.media_type, m.sent_at,
            m.contact, m.is_lid, m.push_name, referral_record(m.referral),  # the pool encodes jsonb
            m.ad_opaque, m.lid]
    return (OPERATOR_SQL if m.from_me else CLIENT_SQL), args


async def _store_one(conn: asyncpg.Connection, sql: str, args: list[Any]) -> Stored:
    if await conn.fetchval(sql, *args) is not None:
        return Stored("stored", args[1])
    return await _why_not(conn, sql, args)


async def _why_not(conn: asyncpg.Connection, sql: str, args: list[Any]) -> Stored:
    message_id = args[1]
    why = await conn.fetchrow(WHY_NOT_SQL, args[0], message_id)
    assert why is not None
    if not why["known"]:
        raise InstanceGone(message_id)
    echo = sql is OPERATOR_SQL and not why["stored"]
    return Stored("echo" if echo else "duplicate", message_id)


Unit = list[list[Any]]  # one webhook's client messages: `_statement`'s arguments for each


async def store_messages(
    conns: PinnedConnections, pool: asyncpg.Pool, instance: Instance, messages: list[Message],
) -> list[Stored]:
    """Store a webhook's messages in one transaction, committed when this returns.

    Client messages go by group commit, with other webhooks' (one statement for all of them); a
    webhook with an operator's message runs alone (its echo check is a statement of its own).
    """
    batch = [_statement(instance, m) for m in messages]
    if any(sql is not CLIENT_SQL for sql, _ in batch):
        return await _store_alone(conns, pool, batch)
    if conns.writer is None:
        conns.writer = GroupCommit(lambda units: _flush(conns, pool, units), in_flight=IN_FLIGHT)
    written: Sequence[Stored | None] = await conns.writer.submit([args for _, args in batch])
    if all(written):
        return [s for s in written if s is not None]
    # nothing inserted for some: a redelivery, or the instance is gone (the rare second look)
    async with conns.connection(pool) as conn:
        return [s or await _why_not(conn, CLIENT_SQL, args) for s, (_, args) in zip(written, batch, strict=True)]


async def _flush(
    conns: PinnedConnections, pool: asyncpg.Pool, units: list[Unit],
) -> Sequence[Sequence[Stored | None] | BaseException]:
    """Many webhooks' client messages in one INSERT (autocommit: one transaction, one WAL flush).
    Per message: stored, or None when it was not inserted (the caller looks why)."""
    rows = [args for unit in units for args in unit]
    columns = [[args[c] for args in rows] for c in range(len(rows[0])) if c != _ROLE]
    try:
        async with conns.connection(pool) as conn:
            new = {(r["instance_name"], r["message_id"]) for r in await conn.fetch(BATCH_SQL, *columns)}
    except Exception:  # one bad message must not fail its neighbours: each webhook alone
        alone = [_store_alone(conns, pool, [(CLIENT_SQL, args) for args in unit]) for unit in units]
        return await asyncio.gather(*alone, return_exceptions=True)
    written: list[Sequence[Stored | None]] = []
    for unit in units:
        outcome: list[Stored | None] = []
        for args in unit:
            key = (args[0], args[1])
            outcome.append(Stored("stored", args[1]) if key in new else None)
            new.discard(key)  # a second delivery of it in this batch was not the one inserted
        written.append(outcome)
    return written


async def _store_alone(
    conns: PinnedConnections, pool: asyncpg.Pool, batch: list[tuple[str, list[Any]]],
) -> list[Stored]:
    """One webhook's messages in a transaction of its own (one statement when, as usual, there is one).

    Tried again on a deadlock (two batches holding the same messages in another order) and once
    on a connection that died under us; the insert is idempotent, so a retry after a commit we did
    not see finds the message and reports it as a duplicate.
    """
    lost_connection = False

    def worth_retrying(exc: Exception) -> bool:
        nonlocal lost_connection
        if isinstance(exc, asyncpg.DeadlockDetectedError):
            return True
        if lost_connection or not is_connection_error(exc):
            return False
        lost_connection = True
        return True

    async def store() -> list[Stored]:
        async with conns.connection(pool) as conn:
            if len(batch) == 1:
                return [await _store_one(conn, *batch[0])]
            async with conn.transaction():
                return [await _store_one(conn, sql, args) for sql, args in batch]

    # the first try outside the retry library: its per-call setup (~50 us) is a tenth of a webhook's
    # whole cost on the intake's hot path, and a first try almost always succeeds
    try:
        return await store()
    except Exception as exc:
        if not worth_retrying(exc):
            raise
    stored: list[Stored] = []
    async for attempt in retrying("bot.intake.store_messages", worth_retrying, attempts=MAX_ATTEMPTS - 1,
                                  wait_initial=0.0, wait_jitter=0.01):
        with attempt:
            stored = await store()
    return stored
