"""The outbox's rows in the database: claiming them and writing what became of them.

Every write after a claim is fenced by the claim's `attempts` value and `status = 'pending'`, so a
sender whose lease ran out cannot overwrite the outcome written by the sender that took over.
All statements are set-based (one per batch, `unnest` of arrays), whatever the batch size.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal

import asyncpg

from capi.hooks import Delivered, DeliveryHook
from capi.tenants import meta_tokens
from core.retries import retrying

_CLAIM_SQL = """
WITH due AS (
    SELECT id FROM capi_events_log
    WHERE status = 'pending' AND next_attempt_at <= now() AND (lease_until IS NULL OR lease_until <= now())
    ORDER BY next_attempt_at
    LIMIT $1
    FOR UPDATE SKIP LOCKED
), claimed AS (
    UPDATE capi_events_log c
    SET attempts = c.attempts + 1, lease_until = now() + make_interval(secs => $2), updated_at = now()
    FROM due WHERE c.id = due.id
    RETURNING c.id, c.attempts, c.event_id, c.event_level, c.event_name, c.pixel_id, c.direction_id,
              c.event_time, c.request
)
SELECT cl.id, cl.attempts, cl.event_id, cl.event_level, cl.event_name, cl.pixel_id AS dataset,
       cl.event_time, (cl.request -> 'data' -> 0)::text AS event_json,
       cl.request ->> 'test_event_code' AS test_event_code,
       cl.request #>> '{data,0,user_data,ctwa_clid}' AS ctwa_clid,
       cl.request #>> '{data,0,action_source}' AS action_source,
       (cl.request #> '{data,0,custom_data,value}') IS NOT NULL
           AND (cl.request #> '{data,0,custom_data,currency}') IS NOT NULL AS has_value,
       cl.direction_id
FROM claimed cl"""

# A statement prepared by asyncpg gets a generic plan after five runs, made without the arrays'
# sizes; for a batch of a thousand ids that plan reads the whole table. Planned for each batch instead.
_CUSTOM_PLANS = "SET LOCAL plan_cache_mode = force_custom_plan"

# `c.id = ANY($1)` and `(status = 'pending') IS TRUE` (the same test, but not one an index can answer)
# make the plan look the batch's rows up by primary key: trusting a count of pending rows made when
# the outbox was nearly empty, the planner would otherwise read every pending row of a backlog.
_SUCCESS_SQL = """
UPDATE capi_events_log c
SET status = 'success', sent_at = now(), response = $3::jsonb, error = NULL, hint = NULL,
    request = c.request || $4::jsonb, lease_until = NULL, updated_at = now()
FROM unnest($1::bigint[], $2::int[]) AS t(id, attempts)
WHERE c.id = ANY($1::bigint[]) AND c.id = t.id AND c.attempts = t.attempts AND (c.status = 'pending') IS TRUE
RETURNING c.id, c.dialog_analysis_id, c.event_level, c.event_id, c.sent_at"""

_OUTCOME_SQL = """
UPDATE capi_events_log c
SET status = t.status,
    error = CASE WHEN t.attempted THEN t.error ELSE c.error END,
    hint = CASE WHEN t.attempted THEN t.hint ELSE c.hint END,
    response = COALESCE(t.response::jsonb, c.response),
    attempts = CASE WHEN t.attempted THEN c.attempts ELSE c.attempts - 1 END,
    next_attempt_at = CASE WHEN t.status = 'pending' THEN now() + make_interval(secs => t.delay)
                           ELSE c.next_attempt_at END,
    request = CASE WHEN t.attempted THEN c.request || $9::jsonb ELSE c.request END,
    lease_until = NULL, updated_at = now()
FROM unnest($1::bigint[], $2::int[], $3::text[], $4::text[], $5::text[], $6::text[], $7::float8[],
            $8::bool[]) AS t(id, attempts, status, error, hint, response, delay, attempted)
WHERE c.id = ANY($1::bigint[]) AND c.id = t.id AND c.attempts = t.attempts AND (c.status = 'pending') IS TRUE
RETURNING c.id"""


# which of two rows for one level stays when two dialogs merge: what Meta already has, then what is
# on its way (a claimed row may be in flight), then an error, then a skip; the older on a tie
_KEEP_ORDER = ("CASE status WHEN 'success' THEN 0 WHEN 'pending' THEN 1 WHEN 'error' THEN 2 ELSE 3 END, "
               "attempts DESC, id")
_DROP_SQL = f"""
WITH rows AS (
    SELECT id, row_number() OVER (PARTITION BY event_level ORDER BY {_KEEP_ORDER}) AS rank,
           first_value(event_id) OVER (PARTITION BY event_level ORDER BY {_KEEP_ORDER}) AS kept
    FROM capi_events_log WHERE dialog_analysis_id IN ($1, $2)
)
UPDATE capi_events_log c
SET dialog_analysis_id = NULL, status = CASE WHEN c.status = 'pending' THEN 'skipped' ELSE c.status END,
    error = format('merged: dialog %s (the same person under another WhatsApp id) was merged into dialog %s, '
                   'which keeps this level as event %s', $1::bigint, $2::bigint, r.kept),
    hint = NULL, updated_at = now()
FROM rows r WHERE c.id = r.id AND r.rank > 1"""
# after the drop, what is left of from_dialog is the one row of its levels
_MOVE_SQL = """
UPDATE capi_events_log SET dialog_analysis_id = $2, contact_phone = COALESCE(contact_phone, $3), updated_at = now()
WHERE dialog_analysis_id = $1"""
_DELIVERED_SQL = """
SELECT dialog_analysis_id, event_level, event_id, sent_at FROM capi_events_log
WHERE dialog_analysis_id = $1 AND status = 'success'"""


def _delivered(rows: Iterable[asyncpg.Record]) -> list[Delivered]:
    return [Delivered(r["dialog_analysis_id"], r["event_level"], r["event_id"], r["sent_at"])
            for r in rows if r["dialog_analysis_id"] is not None]


async def merge_dialog_events(conn: asyncpg.Connection, from_dialog: int, into_dialog: int,
                              contact_phone: str | None, delivered: DeliveryHook) -> tuple[int, int]:
    """Two dialogs turned out to be one person (a WhatsApp LID and its phone): move `from_dialog`'s
    events to `into_dialog`, keeping one row per level — success, else pending, else error, else
    skipped — and taking the others out of the dialog (a pending one becomes `skipped`, so it is
    not sent; a claimed one is kept before an unclaimed one, as it may be in flight). The kept
    successes go to `delivered` (the dialog's sent flags). Inside the caller's transaction;
    returns (dropped, moved)."""
    dropped = await conn.execute(_DROP_SQL, from_dialog, into_dialog)
    moved = await conn.execute(_MOVE_SQL, from_dialog, into_dialog, contact_phone)
    await delivered(conn, _delivered(await conn.fetch(_DELIVERED_SQL, into_dialog)))
    return int(dropped.split()[-1]), int(moved.split()[-1])


@dataclass(frozen=True)
class Claimed:
    """One claimed row, with what its request needs."""

    id: int
    attempts: int
    event_id: str
    event_level: int
    event_name: str
    dataset: str | None
    event_time: datetime
    event_json: str | None
    test_event_code: str | None
    ctwa_clid: str | None
    action_source: str | None
    has_value: bool
    token: str | None = field(repr=False)


@dataclass
class Outcome:
    row: Claimed
    status: Literal["success", "error", "pending"]
    error: str | None = None
    hint: str | None = None
    response: dict[str, Any] | None = None
    delay: float = 0.0
    attempted: bool = True  # False: handed back unposted (the lease was running out)


async def claim(pool: asyncpg.Pool, limit: int, lease: float) -> list[Claimed]:
    """Up to `limit` due rows, now reserved for `lease` seconds (and their `attempts` counted)."""
    # The planner's count of pending rows dates from its last ANALYZE, when the outbox was usually
    # empty; trusting it, it would read every pending row in a bitmap scan and sort them (the whole
    # backlog, for each batch of a burst). The pending index already holds them in due order: read
    # it in order and stop at `limit`.
    async with _transaction(pool, "SET LOCAL enable_bitmapscan = off") as conn:
        records = await conn.fetch(_CLAIM_SQL, limit, lease)
        # each direction's token, once per batch (a batch has a few directions; a deleted one has none)
        tokens = await meta_tokens(conn, {r["direction_id"] for r in records if r["direction_id"]})
    return [_claimed(r, tokens) for r in records]


def _claimed(record: asyncpg.Record, tokens: dict[str, str | None]) -> Claimed:
    """The claimed row (its columns named as the dataclass's fields), with its direction's token."""
    columns = dict(record)
    direction_id = columns.pop("direction_id")
    return Claimed(**columns, token=tokens.get(direction_id) if direction_id else None)


@asynccontextmanager
async def _transaction(pool: asyncpg.Pool, settings: str) -> AsyncIterator[asyncpg.Connection]:
    """A transaction planned per statement (`_CUSTOM_PLANS`) with `settings`, set in the round trip
    of its BEGIN: under load, each round trip also waits for the event loop's turn."""
    async with pool.acquire() as conn:
        await conn.execute(f"BEGIN; {_CUSTOM_PLANS}; {settings}")
        try:
            yield conn
        except BaseException:
            with contextlib.suppress(Exception):
                await conn.execute("ROLLBACK")
            raise
        await conn.execute("COMMIT")


async def commit_success(
    pool: asyncpg.Pool, outcomes: list[Outcome], extras: dict[str, Any], delivered: DeliveryHook,
) -> set[int]:
    """Rows of one answer → `success`, and `delivered` told in the same transaction (the dialogs'
    sent flags). Returns the ids actually written (a row whose claim was lost is left alone)."""
    rows = [o.row for o in outcomes]

    async def statement() -> list[asyncpg.Record]:
        async with _transaction(pool, "") as conn:  # the delivery hook's statement planned per batch too
            done: list[asyncpg.Record] = await conn.fetch(
                _SUCCESS_SQL, [r.id for r in rows], [r.attempts for r in rows], outcomes[0].response, extras)
            await delivered(conn, _delivered(done))
            return done

    done = await _with_retry(statement)
    return {d["id"] for d in done}


async def commit_outcomes(pool: asyncpg.Pool, outcomes: list[Outcome], extras: dict[str, Any]) -> set[int]:
    """Errors, retries and hand-backs, each row with its own values; returns the ids written."""
    async def statement() -> list[asyncpg.Record]:
        async with _transaction(pool, "") as conn:
            done: list[asyncpg.Record] = await conn.fetch(
                _OUTCOME_SQL,
                [o.row.id for o in outcomes], [o.row.attempts for o in outcomes], [o.status for o in outcomes],
                [o.error for o in outcomes], [o.hint for o in outcomes],
                [json.dumps(o.response) if o.response is not None else None for o in outcomes],
                [o.delay for o in outcomes], [o.attempted for o in outcomes], extras,
            )
            return done

    done = await _with_retry(statement)
    return {d["id"] for d in done}


async def _with_retry(
    statement: Callable[[], Awaitable[list[asyncpg.Record]]], tries: int = 3
) -> list[asyncpg.Record]:
    """Run a bookkeeping statement again if Postgres picked it as a deadlock victim."""
    result: list[asyncpg.Record] = []
    async for attempt in retrying("capi.ledger.record", (asyncpg.DeadlockDetectedError, asyncpg.SerializationError),
                                  attempts=tries, wait_initial=0.05, wait_jitter=0.05):
        with attempt:
            result = await statement()
    return result


# A claimed row was due when claimed, and its next_attempt_at stays as it was: the rows with
# next_attempt_at <= now() are the due ones and those in flight, so each part below reads the
# pending index from its start and stops early, or scans no more than the rows in flight.
_NEXT_DUE_SQL = """
SELECT CASE WHEN EXISTS (SELECT 1 FROM capi_events_log
                         WHERE status = 'pending' AND next_attempt_at <= now()
                           AND (lease_until IS NULL OR lease_until <= now()))
            THEN 0
            ELSE EXTRACT(EPOCH FROM least(
                (SELECT min(lease_until) FROM capi_events_log WHERE status = 'pending' AND next_attempt_at <= now()),
                (SELECT min(next_attempt_at) FROM capi_events_log WHERE status = 'pending' AND next_attempt_at > now())
            ) - now())
       END"""


async def next_due_in(pool: asyncpg.Pool | asyncpg.Connection) -> float | None:
    """Seconds until a pending row is due or its lease runs out (≤ 0: now), None when nothing is pending."""
    value = await pool.fetchval(_NEXT_DUE_SQL)
    return float(value) if value is not None else None


_INSERT_SQL = """
INSERT INTO capi_events_log (direction_id, dialog_analysis_id, contact_phone, pixel_id, event_name,
    event_level, event_id, event_time, source, status, error, hint, crm_entity, request)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)
ON CONFLICT DO NOTHING
RETURNING status"""


async def insert_decision(conn: asyncpg.Connection, *values: Any) -> str | None:
    """One (dialog, level) decision, in `_INSERT_SQL`'s column order; None when it already existed."""
    status = await conn.fetchval(_INSERT_SQL, *values)
    return str(status) if status is not None else None


_RETRY_CANDIDATES_SQL = """
SELECT id FROM capi_events_log
WHERE status = ANY($1::text[])
  AND ($2::text IS NULL OR direction_id = $2)
  AND ($3::timestamptz IS NULL OR created_at >= $3)
ORDER BY id"""

_RETRY_ROW_SQL = """
SELECT id, status, direction_id, dialog_analysis_id, event_level, event_id, event_time, crm_entity,
       contact_phone, response
FROM capi_events_log WHERE id = $1 AND status IN ('error', 'skipped') FOR UPDATE SKIP LOCKED"""


async def retry_candidates(
    db: asyncpg.Pool, statuses: Sequence[str], direction_id: str | None, since: datetime | None,
) -> list[int]:
    return [r["id"] for r in await db.fetch(_RETRY_CANDIDATES_SQL, list(statuses), direction_id, since)]


async def lock_for_retry(conn: asyncpg.Connection, row_id: int) -> asyncpg.Record | None:
    """The `error` or `skipped` row, locked; None when it is not (or another retry holds it)."""
    return await conn.fetchrow(_RETRY_ROW_SQL, row_id)


async def mark_skipped(conn: asyncpg.Connection, row_id: int, reason: str, hint: str | None) -> None:
    await conn.execute(
        "UPDATE capi_events_log SET status = 'skipped', error = $2, hint = $3, updated_at = now() WHERE id = $1",
        row_id, reason, hint)


async def requeue(conn: asyncpg.Connection, row_id: int, request: dict[str, Any], event_name: str,
                  dataset: str | None) -> None:
    """Pending again, due now, with the request and name decided anew."""
    await conn.execute(
        """UPDATE capi_events_log
           SET status = 'pending', error = NULL, hint = NULL, response = NULL, request = $2,
               event_name = $3, pixel_id = $4, next_attempt_at = now(), lease_until = NULL, updated_at = now()
           WHERE id = $1""",
        row_id, request, event_name, dataset)


@dataclass(frozen=True)
class LoggedEvent:
    dataset: str | None
    event_name: str
    direction_id: str | None


async def event_of(db: asyncpg.Pool | asyncpg.Connection, row_id: int) -> LoggedEvent | None:
    row = await db.fetchrow("SELECT pixel_id, event_name, direction_id FROM capi_events_log WHERE id = $1", row_id)
    return LoggedEvent(row["pixel_id"], row["event_name"], row["direction_id"]) if row else None


# a person's rows: of their dialogs, or of their accounts' directions with their phone or hashes
_PERSON_ROWS_SQL = """
SELECT c.* FROM capi_events_log c
WHERE c.dialog_analysis_id = ANY($1::bigint[])
   OR (c.direction_id = ANY($2::text[])
       AND (c.contact_phone = ANY($3::text[])
            OR c.request #> '{data,0,user_data,ph}' ?| $4::text[]
            OR c.request #> '{data,0,user_data,em}' ?| $5::text[]))
ORDER BY c.id"""


async def person_rows(db: asyncpg.Pool | asyncpg.Connection, dialog_ids: list[int], direction_ids: list[str],
                      phones: list[str], phone_hashes: list[str], email_hashes: list[str]) -> list[dict[str, Any]]:
    rows = await db.fetch(_PERSON_ROWS_SQL, dialog_ids, direction_ids, phones, phone_hashes, email_hashes)
    return [dict(r) for r in rows]


async def erase_row(conn: asyncpg.Connection, row_id: int, scrubbed_request: Any, reason: str) -> None:
    """The row keeps its audit, not the person: no phone, the scrubbed request; unsent becomes skipped."""
    await conn.execute(
        """UPDATE capi_events_log
           SET contact_phone = NULL, request = $2,
               status = CASE WHEN status IN ('pending', 'error') THEN 'skipped' ELSE status END,
               error = CASE WHEN status IN ('pending', 'error') THEN $3 ELSE error END,
               hint = CASE WHEN status IN ('pending', 'error') THEN NULL ELSE hint END,
               updated_at = now()
           WHERE id = $1""",
        row_id, scrubbed_request, reason,
    )


async def count_status(db: asyncpg.Pool, status: str) -> int:
    return int(await db.fetchval("SELECT count(*) FROM capi_events_log WHERE status = $1", status))


async def outcomes_by_level(db: asyncpg.Pool) -> list[asyncpg.Record]:
    """Every row's level, name, status, attempts, event id and Meta's trace id (`qualibot demo`)."""
    rows: list[asyncpg.Record] = await db.fetch(
        """SELECT event_level, event_name, status, attempts, event_id, response->>'fbtrace_id' AS trace
           FROM capi_events_log ORDER BY event_level""")
    return rows


async def events_of_dialog(db: asyncpg.Pool | asyncpg.Connection, dialog_id: int) -> list[dict[str, Any]]:
    """A dialog's decisions with Meta's answer, by level (the dashboard's dialog page)."""
    rows = await db.fetch(
        """SELECT id, event_level, event_name, event_id, status, attempts, error, hint, response,
                  created_at, sent_at
           FROM capi_events_log WHERE dialog_analysis_id = $1 ORDER BY event_level, id""", dialog_id)
    return [dict(r) for r in rows]
