"""Storing one Evolution message: message, lead, dialog and the dialog's debounced job, in one statement.

One statement (data-modifying CTEs, autocommit) is one round trip and one transaction:
- the message is stored once per (instance, Evolution key id); a redelivery finds it and the
  statement writes nothing at all (`dup`);
- a `fromMe` message that is our own bot reply coming back (same external id, or the text of a reply
  still pending while sendText holds its answer) is recognised (`echo`) and not taken for an operator;
- the lead is upserted: phone, push name, and the ad referral, where the first referral wins (one
  with a click id replaces one without); its direction is the one whose `ad_ids` hold the ad, else
  the instance's default;
- the dialog (`dialog_analysis`) is upserted: client messages count and open a burst, an operator
  message pauses the bot for `operator_pause_hours`;
- the dialog job is debounced like `core.jobs.enqueue(key="dialog:<id>", mode="debounce", delay=buffer,
  max_wait=buffer_max)`: the same INSERT .. ON CONFLICT on the `jobs` table, inlined here so the
  whole intake stays one round trip (the ingest benchmark's target).
A concurrent delivery of the same message that commits first makes this statement raise
serialization_failure (see migrations/003_bot.sql); `store_messages` retries and then finds it.
The account and default direction are read from `whatsapp_instances` by the statement itself, not
from the instance cache, so a change of the default direction applies at once and an instance
removed since its cached lookup stores nothing (`InstanceGone`, answered 404).
It runs on a connection kept out of the pool (`bot.connections`): the pool's reset on release
would be a second round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.connections import PinnedConnections, is_connection_error
from bot.instances import Instance
from bot.parse import Message
from core.logging import get_logger
from core.settings import Settings

log = get_logger("bot.intake")

DIALOG_JOB = "bot.dialog"
MAX_ATTEMPTS = 3

_TAKE = ("(EXCLUDED.referral IS NOT NULL AND (l.referral IS NULL"
         " OR (l.ctwa_clid IS NULL AND EXCLUDED.ctwa_clid IS NOT NULL)))")
_REFERRAL_COLUMNS = ("ctwa_clid", "ad_source_id", "ad_source_url", "ad_title", "ad_source_type",
                     "referral", "referral_at")
_REFERRAL_SET = ",\n        ".join(f"{c} = CASE WHEN {_TAKE} THEN EXCLUDED.{c} ELSE l.{c} END"
                                   for c in _REFERRAL_COLUMNS)

INTAKE_SQL = f"""
WITH dup AS (
    SELECT 1 FROM messages WHERE instance_name = $1 AND message_id = $2
), inst AS (
    SELECT account_id, default_direction_id FROM whatsapp_instances WHERE name = $1
), echo AS (
    SELECT 1 FROM messages m JOIN dialog_analysis d ON d.id = m.dialog_id
    WHERE $6::text = 'operator' AND d.instance_name = $1 AND d.contact_phone = $3 AND m.role = 'bot'
      AND (m.external_id = $2 OR (m.delivery_status = 'pending' AND m.text = $7))
), go AS (
    SELECT NOT EXISTS (SELECT 1 FROM dup) AND NOT EXISTS (SELECT 1 FROM echo) AS ok,
           EXISTS (SELECT 1 FROM echo) AS echo
), ad_dir AS (
    SELECT id FROM account_directions
    WHERE $11::text IS NOT NULL AND account_id = (SELECT account_id FROM inst) AND $11::text = ANY (ad_ids)
    ORDER BY id LIMIT 1
), lead AS (
    INSERT INTO leads AS l (account_id, instance_name, phone, is_lid, push_name, direction_id,
                            ctwa_clid, ad_source_id, ad_source_url, ad_title, ad_source_type,
                            referral, referral_at)
    SELECT inst.account_id, $1, $3, $4, $5, COALESCE((SELECT id FROM ad_dir), inst.default_direction_id),
           $10, $11, $12, $13, $14, $15::jsonb, CASE WHEN $15::jsonb IS NOT NULL THEN now() END
    FROM go, inst WHERE go.ok
    ON CONFLICT (instance_name, phone) DO UPDATE SET
        push_name = COALESCE(EXCLUDED.push_name, l.push_name),
        {_REFERRAL_SET},
        direction_id = CASE WHEN {_TAKE} AND EXISTS (SELECT 1 FROM ad_dir) THEN EXCLUDED.direction_id
                            ELSE COALESCE(l.direction_id, EXCLUDED.direction_id) END,
        updated_at = now()
    RETURNING l.id, l.account_id, l.direction_id
), dialog AS (
    INSERT INTO dialog_analysis AS d (account_id, instance_name, contact_phone, lead_id, direction_id,
                                      client_message_count, last_client_message_at, last_message_at,
                                      burst_started_at, bot_paused_until)
    SELECT lead.account_id, $1, $3, lead.id, lead.direction_id,
           CASE WHEN $6::text = 'client' THEN 1 ELSE 0 END,
           CASE WHEN $6::text = 'client' THEN now() END,
           now(),
           CASE WHEN $6::text = 'client' THEN now() END,
           CASE WHEN $6::text = 'operator' THEN now() + make_interval(secs => $18::float8) END
    FROM lead
    ON CONFLICT (instance_name, contact_phone) DO UPDATE SET
        lead_id = EXCLUDED.lead_id,
        direction_id = COALESCE(EXCLUDED.direction_id, d.direction_id),
        client_message_count = d.client_message_count + EXCLUDED.client_message_count,
        last_client_message_at = COALESCE(EXCLUDED.last_client_message_at, d.last_client_message_at),
        last_message_at = EXCLUDED.last_message_at,
        burst_started_at = COALESCE(d.burst_started_at, EXCLUDED.burst_started_at),
        bot_paused_until = GREATEST(d.bot_paused_until, EXCLUDED.bot_paused_until),
        updated_at = now()
    RETURNING d.id
), msg AS (
    INSERT INTO messages (instance_name, message_id, dialog_id, role, text, media_type, sent_at)
    SELECT $1, $2, dialog.id, $6, $7, $8, $9 FROM dialog
    ON CONFLICT (instance_name, message_id) DO NOTHING
    RETURNING id, dialog_id
), job AS (
    INSERT INTO jobs AS j (name, key, payload, run_at)
    SELECT $19::text, 'dialog:' || msg.dialog_id, jsonb_build_object('dialog_id', msg.dialog_id),
           now() + make_interval(secs => $16::float8)
    FROM msg
    ON CONFLICT (name, key) WHERE status = 'queued' AND key IS NOT NULL DO UPDATE SET
        run_at = LEAST(EXCLUDED.run_at, j.first_queued_at + make_interval(secs => $17::float8)),
        payload = EXCLUDED.payload, updated_at = now()
)
SELECT go.echo, msg.id AS stored_id, msg.dialog_id, NOT EXISTS (SELECT 1 FROM inst) AS gone,
       CASE WHEN go.ok AND msg.id IS NULL AND EXISTS (SELECT 1 FROM inst) THEN bot_concurrent_delivery($2) END
           AS raced
FROM go LEFT JOIN msg ON true
"""


class InstanceGone(Exception):
    """The instance was removed from the configuration after the webhook's cached lookup."""


@dataclass(frozen=True)
class Stored:
    outcome: str  # stored | duplicate | echo
    message_id: str
    dialog_id: int | None = None


def _args(instance: Instance, m: Message, settings: Settings) -> list[Any]:
    ref = m.referral
    return [
        instance.name, m.message_id, m.contact, m.is_lid, m.push_name, "operator" if m.from_me else "client",
        m.text, m.media_type, m.sent_at,
        ref.ctwa_clid if ref else None, ref.source_id if ref else None, ref.source_url if ref else None,
        ref.title if ref else None, ref.source_type if ref else None,
        ref.record() if ref else None,  # the pool encodes jsonb parameters
        settings.buffer_seconds, settings.buffer_max_seconds, settings.operator_pause_hours * 3600.0,
        DIALOG_JOB,
    ]


async def _store_one(conn: asyncpg.Connection, args: list[Any], message_id: str) -> Stored:
    row = await conn.fetchrow(INTAKE_SQL, *args)
    assert row is not None
    if row["gone"]:
        raise InstanceGone(message_id)
    if row["stored_id"] is not None:
        return Stored("stored", message_id, row["dialog_id"])
    return Stored("echo" if row["echo"] else "duplicate", message_id)


async def store_messages(
    conns: PinnedConnections, pool: asyncpg.Pool, instance: Instance, messages: list[Message],
    settings: Settings,
) -> list[Stored]:
    """Store a webhook's messages in one transaction (one statement when, as usual, there is one).

    Retried on a concurrent duplicate (see migrations/003_bot.sql) and once on a connection that
    died under us; the statement is idempotent, so a retry after an unseen commit finds the message.
    """
    batch = [(_args(instance, m, settings), m.message_id) for m in messages]
    lost_connection = False
    for attempt in range(1, MAX_ATTEMPTS + 1):
        try:
            async with conns.connection(pool) as conn:
                if len(batch) == 1:
                    return [await _store_one(conn, *batch[0])]
                async with conn.transaction():
                    return [await _store_one(conn, args, mid) for args, mid in batch]
        except (asyncpg.SerializationError, asyncpg.DeadlockDetectedError):
            if attempt == MAX_ATTEMPTS:
                raise
            log.info("bot.intake_retry", attempt=attempt, reason="concurrent delivery")
        except Exception as exc:
            if lost_connection or attempt == MAX_ATTEMPTS or not is_connection_error(exc):
                raise
            lost_connection = True
            log.warning("bot.intake_retry", attempt=attempt, reason=type(exc).__name__)
    raise AssertionError("unreachable")
