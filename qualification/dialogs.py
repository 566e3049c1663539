"""The dialog store: the one module that holds the SQL of `dialog_analysis` and `messages`.

The level flags are raised only on the door's behalf (`qualification.door`), the CAPI sent flags
only through capi's delivery hook (`mark_sent`, plugged in by `qualibot/wiring.py`). Messages are
stored by bot's intake and drain; what the bot, the qualification job, privacy and `qualibot
doctor` read or change of a dialog and its messages is a function here.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

import asyncpg

from capi import tenants
from capi.hooks import Delivered
from core.jobs import Executor
from qualification.leads import PHONE_MATCH, LeadRef
from qualification.prompt import WINDOW_MESSAGES, Role, Transcript, TranscriptMessage

MAX_DETAIL_CHARS = 500


@dataclass(frozen=True)
class LevelColumns:
    flag: str  # is_interested
    reached_at: str  # interest_reached_at
    sent: str  # capi_interest_sent, with _sent_at and _event_id beside it


# level → its columns of dialog_analysis: written here only
LEVEL_COLUMNS: dict[int, LevelColumns] = {
    1: LevelColumns("is_interested", "interest_reached_at", "capi_interest_sent"),
    2: LevelColumns("is_qualified", "qualified_reached_at", "capi_qualified_sent"),
    3: LevelColumns("is_scheduled", "scheduled_reached_at", "capi_scheduled_sent"),
}


@dataclass(frozen=True)
class DialogState:
    id: int
    direction_id: str | None
    level: int  # highest level already recorded (0..3)
    analyzed_message_id: int | None
    capi_enabled: bool
    capi_source: str | None
    qualification_prompt: str | None
    client_messages: int
    last_client_message_id: int | None
    suspicious_message_id: int | None = None  # a client message addressed to the model (verdict.py)
    analyse_all: bool = False  # the direction's `analyse` switch is `all` (else ad leads only)
    lead_id: int | None = None
    min_confidence: float = 0.0  # the direction's: levels 2-3 less sure than this are held for review

    @property
    def qualifies_from_whatsapp(self) -> bool:
        return self.capi_enabled and self.capi_source == "whatsapp"

    @property
    def has_unanalysed_client_messages(self) -> bool:
        # messages.id is a sequence, so "newer than the last analysis" is "a larger id". The burst
        # buffer runs this job seconds after the last insert, long after their commits settled.
        newest = self.last_client_message_id
        return newest is not None and newest > (self.analyzed_message_id or 0)


async def load_state(db: Executor, dialog_id: int) -> DialogState | None:
    row = await db.fetchrow(
        """SELECT d.id, d.direction_id, dialog_level(d.is_interested, d.is_qualified, d.is_scheduled) AS level,
                  d.analyzed_message_id, d.analysis_suspicious_message_id, d.lead_id,
                  c.n AS client_messages, c.last_id AS last_client_message_id
           FROM dialog_analysis d
           CROSS JOIN LATERAL (
               SELECT count(*) AS n, max(m.id) AS last_id FROM messages m
               WHERE m.dialog_id = d.id AND m.role = 'client') c
           WHERE d.id = $1""",
        dialog_id,
    )
    if row is None:
        return None
    setup = await tenants.qualification_setup(db, row["direction_id"]) if row["direction_id"] else None
    return DialogState(
        id=row["id"],
        direction_id=row["direction_id"],
        level=row["level"],
        analyzed_message_id=row["analyzed_message_id"],
        capi_enabled=bool(setup and setup.capi_enabled),
        capi_source=setup.capi_source if setup else None,
        qualification_prompt=setup.qualification_prompt if setup else None,
        client_messages=row["client_messages"],
        last_client_message_id=row["last_client_message_id"],
        suspicious_message_id=row["analysis_suspicious_message_id"],
        analyse_all=bool(setup and setup.analyse_dialogs == "all"),
        lead_id=row["lead_id"],
        min_confidence=setup.min_confidence if setup else 0.0,
    )


async def load_transcript(db: Executor, dialog_id: int, window: int = WINDOW_MESSAGES) -> Transcript:
    """The newest `window` messages of the dialog, oldest first."""
    rows = await db.fetch(
        """SELECT id, role, text, media_type FROM (
               SELECT id, role, text, media_type FROM messages WHERE dialog_id = $1
               ORDER BY id DESC LIMIT $2) newest
           ORDER BY id""",
        dialog_id, window,
    )
    total = await db.fetchval("SELECT count(*) FROM messages WHERE dialog_id = $1", dialog_id)
    messages = [
        TranscriptMessage(r["id"], cast(Role, r["role"]), r["text"] or "", r["media_type"]) for r in rows
    ]
    return Transcript(messages, omitted=max(int(total) - len(messages), 0))


async def save_analysis(
    conn: asyncpg.Connection, dialog_id: int, *, analyzed_message_id: int | None, detail: str,
    reasoning: str, suspicious: int | None = None, evidence: Sequence[int] = (),
    confidence: float | None = None, held: int | None = None,
) -> None:
    """A completed analysis: move the watermark (never backwards) and keep the model's reasoning.
    `suspicious`: a client message addressed to the model; the mark stays once set. `evidence`: the
    messages an accepted level cites (the dashboard's dialog page); empty keeps the last ones. `held`:
    a level 2 or 3 held for review (confidence below the direction's threshold); the higher one stays."""
    await conn.execute(
        """UPDATE dialog_analysis
           SET analyzed_message_id = GREATEST(analyzed_message_id, $2), analyzed_at = now(),
               analysis_status = 'ok', analysis_detail = $3, analysis_reasoning = $4, updated_at = now(),
               analysis_suspicious_message_id = COALESCE($5, analysis_suspicious_message_id),
               analysis_suspicious_at = CASE WHEN $5::bigint IS NULL THEN analysis_suspicious_at
                                             ELSE COALESCE(analysis_suspicious_at, now()) END,
               analysis_evidence = COALESCE($6, analysis_evidence),
               analysis_confidence = $7,
               analysis_held_at = CASE WHEN $8::smallint > COALESCE(analysis_held_level, 0) THEN now()
                                       ELSE analysis_held_at END,
               analysis_held_level = GREATEST(analysis_held_level, $8::smallint)
           WHERE id = $1""",
        dialog_id, analyzed_message_id, detail[:MAX_DETAIL_CHARS], reasoning, suspicious, list(evidence) or None,
        confidence, held,
    )


async def mark_unanalysed(db: Executor, dialog_id: int, status: str, detail: str) -> None:
    """`not_analysed` (no criteria or no LLM) or `failed` (the LLM did not answer usably). The
    watermark stays, so the same messages are analysed once the cause is gone."""
    await db.execute(
        """UPDATE dialog_analysis
           SET analysis_status = $2, analysis_detail = $3, updated_at = now()
           WHERE id = $1""",
        dialog_id, status, detail[:MAX_DETAIL_CHARS],
    )


SUSPICIOUS_SQL = """
SELECT direction_id, count(*) AS n, max(analysis_suspicious_at) AS latest
FROM dialog_analysis WHERE analysis_suspicious_message_id IS NOT NULL
GROUP BY direction_id ORDER BY direction_id NULLS FIRST
"""


async def count_held(db: Executor) -> list[tuple[str | None, int]]:
    """Dialogs with a level 2 or 3 held for review (low confidence), per direction."""
    rows = await db.fetch(
        """SELECT direction_id, count(*) AS n FROM dialog_analysis
           WHERE analysis_held_level > dialog_level(is_interested, is_qualified, is_scheduled)
           GROUP BY direction_id ORDER BY direction_id NULLS FIRST""")
    return [(r["direction_id"], r["n"]) for r in rows]


async def count_suspicious(db: Executor) -> list[tuple[str | None, int]]:
    """(direction, dialogs whose analysis is marked suspicious) for each direction that has some."""
    return [(r["direction_id"], int(r["n"])) for r in await db.fetch(SUSPICIOUS_SQL)]


async def remove_old_reasoning(pool: asyncpg.Pool, before: datetime, batch: int) -> int:
    """Retention (`core.retention`): the model's reasoning may quote the client; remove it from up
    to `batch` dialogs last analysed before `before`. Returns how many."""
    return int(await pool.fetchval(
        """WITH old AS (SELECT id FROM dialog_analysis
                        WHERE analysis_reasoning IS NOT NULL AND analyzed_at < $1
                        ORDER BY analyzed_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                done AS (UPDATE dialog_analysis d SET analysis_reasoning = NULL
                         FROM old WHERE d.id = old.id RETURNING 1)
           SELECT count(*) FROM done""",
        before, batch,
    ))


async def lock_levels(conn: asyncpg.Connection, dialog_id: int) -> tuple[str | None, set[int]] | None:
    """Lock the dialog's row (FOR UPDATE) and return (direction, levels reached); None: no dialog."""
    row = await conn.fetchrow(
        """SELECT direction_id, is_interested, is_qualified, is_scheduled
           FROM dialog_analysis WHERE id = $1 FOR UPDATE""",
        dialog_id,
    )
    if row is None:
        return None
    return row["direction_id"], {level for level, c in LEVEL_COLUMNS.items() if row[c.flag]}


async def raise_levels(conn: asyncpg.Connection, dialog_id: int, levels: Sequence[int], when: datetime) -> None:
    """Set the flags of `levels` (the door's call), keeping an earlier reached-at time."""
    sets = ", ".join(f"{c.flag} = true, {c.reached_at} = COALESCE({c.reached_at}, $2)"
                     for c in (LEVEL_COLUMNS[n] for n in levels))
    await conn.execute(f"UPDATE dialog_analysis SET {sets}, updated_at = now() WHERE id = $1", dialog_id, when)


async def merge_levels(conn: asyncpg.Connection, from_dialog: int, into_dialog: int) -> None:
    """`into_dialog` gets every level either reached, at the earlier time. The analysis watermark is
    reset unless both were analysed: the merged transcript is new to the LLM."""
    sets = ", ".join(f"{c.flag} = i.{c.flag} OR f.{c.flag}, {c.reached_at} = LEAST(i.{c.reached_at}, f.{c.reached_at})"
                     for c in LEVEL_COLUMNS.values())
    await conn.execute(
        f"""UPDATE dialog_analysis i SET {sets},
                analyzed_message_id = CASE WHEN i.analyzed_message_id IS NOT NULL AND f.analyzed_message_id IS NOT NULL
                    THEN LEAST(i.analyzed_message_id, f.analyzed_message_id) END,
                updated_at = now()
            FROM dialog_analysis f WHERE i.id = $1 AND f.id = $2""",
        into_dialog, from_dialog,
    )


async def mark_sent(conn: asyncpg.Connection, delivered: Sequence[Delivered]) -> None:
    """capi's delivery hook: Meta accepted these (dialog, level) events; set their sent flags, time
    and event id. One statement, in the caller's (capi's) transaction."""
    if not delivered:
        return
    per_dialog = ", ".join(
        f"bool_or(level = {n}) AS sent{n}, min(sent_at) FILTER (WHERE level = {n}) AS at{n}, "
        f"min(event_id) FILTER (WHERE level = {n}) AS id{n}"
        for n in LEVEL_COLUMNS
    )
    set_flags = ", ".join(
        f"{c.sent} = d.{c.sent} OR p.sent{n}, {c.sent}_at = COALESCE(p.at{n}, d.{c.sent}_at), "
        f"{_event_id_column(c)} = COALESCE(p.id{n}, d.{_event_id_column(c)})"
        for n, c in LEVEL_COLUMNS.items()
    )
    await conn.execute(
        f"""WITH p AS (
                SELECT dialog_id, {per_dialog}
                FROM unnest($1::bigint[], $2::int[], $3::text[], $4::timestamptz[])
                     AS t(dialog_id, level, event_id, sent_at)
                GROUP BY dialog_id)
            UPDATE dialog_analysis d SET {set_flags}, updated_at = now()
            FROM p WHERE d.id = p.dialog_id""",
        [x.dialog_id for x in delivered], [x.level for x in delivered], [x.event_id for x in delivered],
        [x.sent_at for x in delivered],
    )


def _event_id_column(c: LevelColumns) -> str:
    return c.sent.removesuffix("_sent") + "_event_id"


@dataclass(frozen=True)
class DialogLead:
    direction_id: str | None
    instance_name: str
    contact_phone: str
    lead_id: int | None


async def dialog_lead(db: Executor, dialog_id: int) -> DialogLead | None:
    row = await db.fetchrow(
        "SELECT direction_id, instance_name, contact_phone, lead_id FROM dialog_analysis WHERE id = $1", dialog_id)
    return DialogLead(**dict(row)) if row else None


@dataclass(frozen=True)
class DialogRef:
    id: int
    direction_id: str | None
    contact_phone: str


async def of_leads(db: Executor, account_id: str, leads: Sequence[LeadRef]) -> list[DialogRef]:
    """The account's dialogs of these leads: by lead id, or by the lead's instance and phone for a
    dialog that predates its lead link."""
    if not leads:
        return []
    rows = await db.fetch(
        """SELECT DISTINCT d.id, d.direction_id, d.contact_phone
           FROM unnest($2::bigint[], $3::text[], $4::text[]) AS l(id, instance_name, phone)
           JOIN dialog_analysis d
             ON d.account_id = $1
            AND (d.lead_id = l.id OR (d.instance_name = l.instance_name AND d.contact_phone = l.phone))
           ORDER BY d.id""",
        account_id, [x.id for x in leads], [x.instance_name for x in leads], [x.phone for x in leads],
    )
    return [DialogRef(r["id"], r["direction_id"], r["contact_phone"]) for r in rows]


async def resume_bot(conn: asyncpg.Connection, instance: str, contact: str) -> tuple[int, str, datetime | None] | None:
    """End the operator pause of the chat's dialog: (dialog, contact, paused until before), or None
    when the chat has no dialog. Locks the dialog, so call it inside a transaction."""
    row = await conn.fetchrow(
        """WITH chat AS (
               SELECT id, contact_phone, bot_paused_until FROM dialog_analysis
               WHERE instance_name = $1 AND contact_phone = $2 ORDER BY id LIMIT 1 FOR UPDATE
           ), resumed AS (
               UPDATE dialog_analysis d SET bot_paused_until = NULL, updated_at = now()
               FROM chat WHERE d.id = chat.id AND d.bot_paused_until > now()
           )
           SELECT id, contact_phone, CASE WHEN bot_paused_until > now() THEN bot_paused_until END AS paused_until
           FROM chat""",
        instance, contact)
    return (row["id"], row["contact_phone"], row["paused_until"]) if row else None


@dataclass(frozen=True)
class ReplyView:
    """What the reply job reads of a dialog and its messages."""

    id: int
    instance_name: str
    contact: str
    lead_id: int | None
    paused: bool
    direction_id: str | None
    last_client_id: int | None  # messages.id of the newest client message
    replied: bool  # a bot reply to the burst ending at last_client_id exists
    waiting: bool  # a message of this chat is stored but not yet linked by the intake drain


async def reply_view(db: Executor, dialog_id: int) -> ReplyView | None:
    row = await db.fetchrow(
        """SELECT d.id, d.instance_name, d.contact_phone AS contact, d.lead_id,
                  COALESCE(d.bot_paused_until > now(), false) AS paused, d.direction_id,
                  last.id AS last_client_id,
                  EXISTS (SELECT 1 FROM messages r WHERE r.reply_to = last.id) AS replied,
                  EXISTS (SELECT 1 FROM messages w
                          WHERE w.dialog_id IS NULL AND w.intake_error IS NULL
                            AND w.instance_name = d.instance_name
                            AND w.contact = d.contact_phone) AS waiting
           FROM dialog_analysis d
           LEFT JOIN LATERAL (SELECT max(m.id) AS id FROM messages m
                              WHERE m.dialog_id = d.id AND m.role = 'client') last ON true
           WHERE d.id = $1""",
        dialog_id,
    )
    return ReplyView(**dict(row)) if row else None


async def recent_messages(db: Executor, dialog_id: int, upto: int, limit: int) -> list[tuple[str, str]]:
    """(role, text) of the `limit` newest messages up to `upto`, oldest first; failed bot sends left out."""
    rows = await db.fetch(
        """SELECT role, text FROM messages
           WHERE dialog_id = $1 AND id <= $2 AND delivery_status IS DISTINCT FROM 'failed'
           ORDER BY id DESC LIMIT $3""",
        dialog_id, upto, limit,
    )
    return [(r["role"], r["text"]) for r in reversed(rows)]


async def insert_reply(db: Executor, dialog_id: int, message_id: str, text: str, reply_to: int | None) -> int | None:
    """The bot's reply to the burst ending at `reply_to`, as `pending`; None when that burst has
    one already or the bot is paused (`messages.reply_to` is unique)."""
    value = await db.fetchval(
        """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, delivery_status, reply_to)
           SELECT d.instance_name, $2, d.id, 'bot', $3, 'pending', $4 FROM dialog_analysis d
           WHERE d.id = $1 AND (d.bot_paused_until IS NULL OR d.bot_paused_until <= now())
           ON CONFLICT (reply_to) WHERE reply_to IS NOT NULL DO NOTHING
           RETURNING id""",
        dialog_id, message_id, text, reply_to,
    )
    return int(value) if value is not None else None


async def record_delivery(db: Executor, message_id: int, status: str, error: str | None,
                          external_id: str | None) -> None:
    await db.execute(
        """UPDATE messages SET delivery_status = $2, delivery_error = $3, external_id = $4,
                  sent_at = CASE WHEN $2 = 'sent' THEN now() ELSE sent_at END
           WHERE id = $1""",
        message_id, status, error, external_id,
    )


# Meta's delivery statuses of a reply (WhatsApp Cloud API statuses[]) only move forward
_PEER_RANK = "CASE {0} WHEN 'sent' THEN 1 WHEN 'delivered' THEN 2 WHEN 'read' THEN 3 WHEN 'failed' THEN 4 ELSE 0 END"


async def record_peer_status(db: Executor, instance_name: str, external_id: str, status: str, at: datetime,
                             error: str | None) -> bool:
    """Meta's status of our reply (found by the id Graph answered with): sent → delivered → read, or
    failed, which marks the reply not delivered, with why. A status older than the one recorded
    changes nothing (Meta's webhooks arrive in any order). True when something changed."""
    value = await db.fetchval(
        f"""UPDATE messages SET peer_status = $3, peer_status_at = $4,
                  delivery_status = CASE WHEN $3 = 'failed' THEN 'failed' ELSE delivery_status END,
                  delivery_error = CASE WHEN $3 = 'failed' THEN $5 ELSE delivery_error END
           WHERE instance_name = $1 AND external_id = $2 AND role = 'bot'
             AND {_PEER_RANK.format("peer_status")} < {_PEER_RANK.format("$3::text")}
           RETURNING id""",
        instance_name, external_id, status, at, error,
    )
    return value is not None


async def client_message_time(db: Executor, message_id: int) -> datetime | None:
    """When the person sent the message (WhatsApp's timestamp): where a customer-service window starts."""
    value = await db.fetchval("SELECT sent_at FROM messages WHERE id = $1 AND role = 'client'", message_id)
    return cast(datetime | None, value)


async def dialog_of_message(db: Executor, instance_name: str, wamid: str) -> int | None:
    """The dialog a WhatsApp message id belongs to: a person's message, or a reply of ours by its sent id."""
    value = await db.fetchval(
        """SELECT dialog_id FROM messages WHERE instance_name = $1 AND (message_id = $2 OR external_id = $2)
           AND dialog_id IS NOT NULL LIMIT 1""",
        instance_name, wamid,
    )
    return int(value) if value is not None else None


async def close_burst(db: Executor, dialog_id: int, last_client_id: int) -> None:
    """The burst ends, unless a client message newer than `last_client_id` opened another."""
    await db.execute(
        """UPDATE dialog_analysis SET burst_started_at = NULL, updated_at = now()
           WHERE id = $1 AND burst_started_at IS NOT NULL
             AND NOT EXISTS (SELECT 1 FROM messages
                             WHERE dialog_id = $1 AND role = 'client' AND id > $2)""",
        dialog_id, last_client_id,
    )


# for operators (`qualibot doctor` prints them): set-aside messages back in line; orphans removed
RELINK_SQL = "UPDATE messages SET intake_error = NULL WHERE intake_error IS NOT NULL"


def orphans_sql(instances: Sequence[str]) -> str:
    names = ", ".join("'" + name.replace("'", "''") + "'" for name in instances)
    return f"DELETE FROM messages WHERE dialog_id IS NULL AND instance_name IN ({names})"


async def intake_backlog(
    db: Executor, instances: Sequence[str],
) -> tuple[int, float | None, int, str | None, int, list[str]]:
    """Messages not yet linked to a dialog: (waiting, the oldest's age in seconds, set aside, the
    latest set-aside reason, orphaned: their instance is not one of `instances`, and those instances)."""
    row = await db.fetchrow(
        """SELECT count(*) FILTER (WHERE known AND intake_error IS NULL) AS waiting,
                  extract(epoch FROM now() - min(created_at) FILTER (WHERE known AND intake_error IS NULL))
                      ::float8 AS oldest,
                  count(*) FILTER (WHERE intake_error IS NOT NULL) AS set_aside,
                  (array_agg(intake_error ORDER BY id DESC) FILTER (WHERE intake_error IS NOT NULL))[1] AS last_error,
                  count(*) FILTER (WHERE NOT known AND intake_error IS NULL) AS orphaned,
                  array_agg(DISTINCT instance_name ORDER BY instance_name)
                      FILTER (WHERE NOT known AND intake_error IS NULL) AS orphan_instances
           FROM (SELECT m.*, m.instance_name = ANY($1::text[]) AS known FROM messages m
                 WHERE m.dialog_id IS NULL) m""",
        list(instances))
    assert row is not None
    return (row["waiting"], row["oldest"], row["set_aside"], row["last_error"], row["orphaned"],
            list(row["orphan_instances"] or []))


async def not_analysed_by_direction(db: Executor) -> dict[str | None, tuple[int, str | None]]:
    """Per direction (None: no direction): dialogs `not_analysed`, and the latest one's reason."""
    rows = await db.fetch(
        """SELECT DISTINCT ON (direction_id) direction_id, count(*) OVER (PARTITION BY direction_id) AS n,
                  analysis_detail
           FROM dialog_analysis WHERE analysis_status = 'not_analysed'
           ORDER BY direction_id, updated_at DESC""")
    return {r["direction_id"]: (r["n"], r["analysis_detail"]) for r in rows}


async def undirected_by_instance(db: Executor) -> dict[str, int]:
    """Dialogs that belong to no direction, per instance."""
    rows = await db.fetch(
        """SELECT instance_name, count(*)::int AS n FROM dialog_analysis WHERE direction_id IS NULL
           GROUP BY instance_name ORDER BY instance_name""")
    return {r["instance_name"]: r["n"] for r in rows}


async def first_sent_flags(db: Executor) -> tuple[bool, ...] | None:
    """The sent flags of levels 1..3 of the first dialog (`qualibot demo` has one)."""
    row = await db.fetchrow(
        f"SELECT {', '.join(c.sent for c in LEVEL_COLUMNS.values())} FROM dialog_analysis ORDER BY id LIMIT 1")
    return tuple(row) if row else None


async def person_dialogs(db: Executor, accounts: Sequence[str], phones: Sequence[str],
                         lead_ids: Sequence[int]) -> list[dict[str, Any]]:
    """The dialogs of (account, phone or LID) pairs, and of the person's leads, oldest first."""
    rows = await db.fetch(
        f"""SELECT d.* FROM dialog_analysis d
            WHERE d.id IN (SELECT d2.id FROM dialog_analysis d2
                           JOIN unnest($1::text[], $2::text[]) AS t(account_id, phone)
                             ON d2.account_id = t.account_id AND {PHONE_MATCH.format(col="d2.contact_phone")})
               OR d.lead_id = ANY($3::bigint[])
            ORDER BY d.id""",
        list(accounts), list(phones), list(lead_ids))
    return [dict(r) for r in rows]


# the person's messages: those of their dialogs, and those still waiting for the drain in their chats
_PERSON_MESSAGES = f"""
m.dialog_id = ANY($1::bigint[])
OR (m.dialog_id IS NULL AND EXISTS (
        SELECT 1 FROM unnest($2::text[], $3::text[]) AS t(instance_name, phone)
        WHERE t.instance_name = m.instance_name AND (m.lid = t.phone OR {PHONE_MATCH.format(col="m.contact")})))"""


async def person_messages(db: Executor, dialog_ids: Sequence[int],
                          waiting: Sequence[tuple[str, str]]) -> list[dict[str, Any]]:
    rows = await db.fetch(
        f"""SELECT m.id, m.instance_name, m.dialog_id, m.role, m.text, m.media_type, m.sent_at, m.push_name,
                   m.referral, m.delivery_status, m.created_at, m.text_removed_at
            FROM messages m WHERE {_PERSON_MESSAGES} ORDER BY m.id""",
        list(dialog_ids), [i for i, _ in waiting], [p for _, p in waiting])
    return [dict(r) for r in rows]


async def delete_person_messages(conn: asyncpg.Connection, dialog_ids: Sequence[int],
                                 waiting: Sequence[tuple[str, str]]) -> int:
    status = await conn.execute(f"DELETE FROM messages m WHERE {_PERSON_MESSAGES}",
                                list(dialog_ids), [i for i, _ in waiting], [p for _, p in waiting])
    return int(status.split()[-1])


async def anonymise(conn: asyncpg.Connection, dialog_ids: Sequence[int], prefix: str) -> int:
    """Erasure: the dialogs stay (counts, levels, the audit's link); the phone becomes `prefix<id>`
    and the model's reasoning, which may quote the person, goes."""
    status = await conn.execute(
        """UPDATE dialog_analysis SET contact_phone = $2 || id, lead_id = NULL, analysis_reasoning = NULL,
                  burst_started_at = NULL, updated_at = now()
           WHERE id = ANY($1::bigint[])""",
        list(dialog_ids), prefix)
    return int(status.split()[-1])


async def remove_old_text(pool: asyncpg.Pool, before: datetime, batch: int) -> int:
    """Retention: blank the text and push name of up to `batch` linked messages received before
    `before`; returns how many. The partial index `messages_retention` makes an idle pass one probe."""
    return int(await pool.fetchval(
        """WITH old AS (
               SELECT id FROM messages
               WHERE text_removed_at IS NULL AND dialog_id IS NOT NULL AND created_at < $1
               ORDER BY created_at LIMIT $2 FOR UPDATE SKIP LOCKED),
           done AS (
               UPDATE messages m SET text = '', push_name = NULL, text_removed_at = now()
               FROM old WHERE m.id = old.id RETURNING 1)
           SELECT count(*) FROM done""",
        before, batch,
    ))


# --- a chat first seen under its WhatsApp LID, then with its phone (bot.lids, in the drain's transaction)

async def batch_lid_phones(conn: asyncpg.Connection, ids: Sequence[int]) -> list[tuple[str, str, str]]:
    """(instance, LID, phone) that messages of the batch name together; the first per LID."""
    rows = await conn.fetch(
        """SELECT DISTINCT ON (instance_name, lid) instance_name, lid, contact FROM messages
           WHERE id = ANY ($1::bigint[]) AND lid IS NOT NULL AND NOT is_lid
           ORDER BY instance_name, lid, id""", list(ids))
    return [(r["instance_name"], r["lid"], r["contact"]) for r in rows]


async def batch_lids(conn: asyncpg.Connection, ids: Sequence[int], *, alone: bool) -> list[tuple[str, str]]:
    """(instance, LID) of the batch: of LID-only messages (`alone`), else of messages that keep a LID."""
    rows = await conn.fetch(
        """SELECT DISTINCT instance_name, CASE WHEN $2 THEN contact ELSE lid END AS lid FROM messages
           WHERE id = ANY ($1::bigint[]) AND CASE WHEN $2 THEN is_lid ELSE lid IS NOT NULL END
           ORDER BY 1, 2""", list(ids), alone)
    return [(r["instance_name"], r["lid"]) for r in rows]


async def give_phones(conn: asyncpg.Connection, ids: Sequence[int], mapped: Sequence[tuple[str, str, str]]) -> None:
    """LID-only messages of the batch whose LID is `mapped` (instance, LID, phone) get the phone; the LID stays
    in `lid`."""
    await conn.execute(
        """UPDATE messages m SET contact = t.phone, is_lid = false, lid = m.contact
           FROM unnest($2::text[], $3::text[], $4::text[]) AS t(instance_name, lid, phone)
           WHERE m.id = ANY ($1::bigint[]) AND m.is_lid AND t.instance_name = m.instance_name AND t.lid = m.contact""",
        list(ids), [m[0] for m in mapped], [m[1] for m in mapped], [m[2] for m in mapped])


async def lock_chat_dialogs(
    conn: asyncpg.Connection, instance: str, lid: str, phone: str,
) -> tuple[int | None, int | None]:
    """(the LID's dialog, the phone's dialog), each locked."""
    row = await conn.fetchrow(
        """SELECT (SELECT id FROM dialog_analysis
                   WHERE instance_name = $1 AND contact_phone = $2 FOR UPDATE) AS lid_dialog,
                  (SELECT id FROM dialog_analysis
                   WHERE instance_name = $1 AND contact_phone = $3 FOR UPDATE) AS phone_dialog""",
        instance, lid, phone)
    assert row is not None
    return row["lid_dialog"], row["phone_dialog"]


async def rename_dialog(conn: asyncpg.Connection, dialog_id: int, phone: str, lead_id: int) -> None:
    await conn.execute("UPDATE dialog_analysis SET contact_phone = $2, lead_id = $3, updated_at = now() WHERE id = $1",
                       dialog_id, phone, lead_id)


async def merge_dialog(conn: asyncpg.Connection, into_dialog: int, from_dialog: int, lead_id: int,
                       lead_direction: str | None) -> None:
    """`into_dialog` takes the counts, times and pause of both (levels: `door.merge_levels`)."""
    await conn.execute(
        """UPDATE dialog_analysis i SET
               lead_id = $3,
               direction_id = COALESCE($4, i.direction_id, f.direction_id),
               client_message_count = i.client_message_count + f.client_message_count,
               last_client_message_at = GREATEST(i.last_client_message_at, f.last_client_message_at),
               last_message_at = GREATEST(i.last_message_at, f.last_message_at),
               burst_started_at = LEAST(i.burst_started_at, f.burst_started_at),
               bot_paused_until = GREATEST(i.bot_paused_until, f.bot_paused_until),
               created_at = LEAST(i.created_at, f.created_at),
               updated_at = now()
           FROM dialog_analysis f WHERE i.id = $1 AND f.id = $2""",
        into_dialog, from_dialog, lead_id, lead_direction)


async def move_messages(conn: asyncpg.Connection, from_dialog: int, into_dialog: int, phone: str, lid: str) -> None:
    await conn.execute(
        "UPDATE messages SET dialog_id = $2, contact = $3, is_lid = false, lid = $4 WHERE dialog_id = $1",
        from_dialog, into_dialog, phone, lid)


async def delete_dialog(conn: asyncpg.Connection, dialog_id: int) -> None:
    await conn.execute("DELETE FROM dialog_analysis WHERE id = $1", dialog_id)


# the dashboard's dialog page: the dialog, its analysis and the cited evidence, and its transcript
_AUDIT_SQL = """
SELECT id, account_id, direction_id, instance_name, contact_phone, lead_id, created_at,
       dialog_level(is_interested, is_qualified, is_scheduled) AS level,
       interest_reached_at, qualified_reached_at, scheduled_reached_at,
       analysis_status, analysis_detail, analysis_reasoning, analysis_evidence, analyzed_at,
       analysis_confidence, analysis_held_level, analysis_held_at
FROM dialog_analysis WHERE id = $1"""


async def dialog_audit(db: Executor, dialog_id: int) -> dict[str, Any] | None:
    row = await db.fetchrow(_AUDIT_SQL, dialog_id)
    return dict(row) if row else None


async def transcript_page(db: Executor, dialog_id: int, limit: int) -> list[dict[str, Any]]:
    """The newest `limit` messages of the dialog, oldest first, with their time."""
    rows = await db.fetch(
        """SELECT id, role, text, media_type, sent_at FROM (
               SELECT id, role, text, media_type, sent_at FROM messages WHERE dialog_id = $1
               ORDER BY id DESC LIMIT $2) newest
           ORDER BY id""",
        dialog_id, limit)
    return [dict(r) for r in rows]
