"""The intake drain: links received messages to their lead and dialog, and debounces dialog jobs.

The webhook (`bot.intake`) stores each message alone and answers; this loop, run by every worker
(`core.jobs` loops), takes the waiting messages (dialog_id NULL) in arrival order, up to `BATCH`
at a time, and in one transaction:
0. only when the batch names a WhatsApp LID: learns LID → phone mappings, gives LID-only messages
   their phone, and merges a chat recorded under a LID into its phone's lead and dialog (`bot.lids`);
1. upserts one lead per chat: phone, push name, and the ad referral, where the first referral wins
   (one with a click id replaces one without); its direction is the one whose `ad_ids` hold the
   ad, else the instance's default;
2. upserts the dialog (`dialog_analysis`): client messages count and open a burst, an operator
   message pauses the bot for `operator_pause_hours`;
3. sets the messages' dialog_id and debounces each dialog's job like `core.jobs.enqueue(key=
   "dialog:<id>", mode="debounce", delay=buffer, max_wait=buffer_max)`, from the messages' own
   receipt times (set-wise, with `core.jobs.keyed_conflict`, the queue's own conflict rule).
Set-based statements over a batch cost far less per message than the same writes per webhook,
and they keep that work off the path Evolution waits on. Drains run in every worker at once, over
`PARTITIONS` partitions of the chats (a hash of instance and contact): a drain first takes
transaction advisory locks on partitions that have waiting messages (`pg_try_advisory_xact_lock`,
skipping those another drain holds, starting at a random one, enough for about a batch), then, in a
new statement (a snapshot taken after the locks), claims the waiting messages of those partitions
in arrival order. A chat lives in one partition, so its messages are linked by one drain at a
time, once, in order, and "first referral wins" holds across batches. (A LID merge touches two
chats, possibly in two partitions: their row locks serialize it, and a deadlock rolls the batch
back for the next drain.) The messages table's trigger NOTIFYs `INTAKE_CHANNEL` when a message
arrives with none waiting before it, so an idle drain wakes at once instead of polling; a busy one
looks again after each batch that linked something.
The statements join real tables through their indexes, never two CTEs, so a generic plan that
guesses a batch of one row stays linear for a batch of 500.
A message whose instance was removed is left waiting, not linked; a crash mid-batch rolls back
and the next drain takes the same messages again. A batch that fails on bad data (an error no
retry can fix) is retried one message at a time, and the message that fails alone is set aside
(`messages.intake_error`, reported by `qualibot doctor`), so one bad message never stops intake.
"""

from __future__ import annotations

import random

import asyncpg

from bot import lids
from bot.intake import DIALOG_JOB
from core.context import AppContext
from core.jobs import keyed_conflict
from core.logging import get_logger
from core.metrics import INTAKE_DRAINED, INTAKE_LAG
from core.settings import Settings
from qualification.leads import AD_DIRECTION, LEAD_CONFLICT

log = get_logger("bot.drain")

BATCH = 500
# Planning these statements costs more than running them on a small batch (≈ 7 ms a batch when
# PostgreSQL re-plans them every time); their generic plans are index lookups by message id.
# The drain's commit need not wait for the disk: if the server crashes before its WAL is flushed,
# the batch's messages are simply unlinked again and the next drain redoes it. Anything that acts
# on the drain's result (a reply, a CAPI event) commits synchronously first, which flushes the
# drain's WAL with it.
SESSION = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL synchronous_commit = off"
LOCK_KEY = 7_301_001  # pg advisory lock namespace: (LOCK_KEY, partition) is held by one drain at a time
PARTITIONS = 16  # fixed: every process must cut the chats the same way
INTAKE_CHANNEL = "qualibot_intake"  # NOTIFYed by the messages table's trigger (migration 014)
# a woken drain starts at once after a quiet spell, but under load no more than this often, so
# messages arriving meanwhile gather into one batch (a batch per message costs 2-3 × the CPU)
DRAIN_MIN_INTERVAL = 0.1
# deterministic problems of the data itself (SQLSTATE classes 22, 23, 54): retrying cannot help
DATA_ERRORS = (asyncpg.DataError, asyncpg.IntegrityConstraintViolationError, asyncpg.ProgramLimitExceededError)

# a chat's partition; the same expression in both statements below
PART_SQL = f"(hashtext(m.instance_name || ' ' || m.contact) & {PARTITIONS - 1})"

# the partitions of the first waiting messages, with how many each holds
WAITING_SQL = f"""
SELECT {PART_SQL} AS part, count(*)::int AS n FROM (
    SELECT m.instance_name, m.contact FROM messages m
    WHERE m.dialog_id IS NULL AND m.intake_error IS NULL
      AND EXISTS (SELECT 1 FROM whatsapp_instances i WHERE i.name = m.instance_name)
    ORDER BY m.id LIMIT $1
) m GROUP BY 1
"""

LOCK_SQL = "SELECT COALESCE(array_agg(p), '{}') FROM unnest($1::int[]) p WHERE pg_try_advisory_xact_lock($2, p)"

CLAIM_SQL = f"""
SELECT array_agg(w.id ORDER BY w.id) AS ids,
       extract(epoch FROM clock_timestamp() - min(w.created_at))::float8 AS lag,
       COALESCE(bool_or(w.is_lid OR w.lid IS NOT NULL), false) AS lids FROM (
    SELECT m.id, m.created_at, m.is_lid, m.lid FROM messages m
    WHERE m.dialog_id IS NULL AND m.intake_error IS NULL AND {PART_SQL} = ANY ($2::int[])
      AND EXISTS (SELECT 1 FROM whatsapp_instances i WHERE i.name = m.instance_name)
    ORDER BY m.id LIMIT $1
) w
"""

# one row per chat; the referral chosen is the first with a click id, else the first at all
LEADS_SQL = f"""
WITH chats AS (
    SELECT instance_name, contact, bool_or(is_lid) AS is_lid,
           (array_agg(push_name ORDER BY id DESC) FILTER (WHERE push_name IS NOT NULL))[1] AS push_name,
           (array_agg(referral || jsonb_build_object('at', created_at)
                      ORDER BY referral->>'ctwa_clid' IS NULL, id) FILTER (WHERE referral IS NOT NULL))[1] AS ref
    FROM messages WHERE id = ANY ($1::bigint[])
    GROUP BY instance_name, contact
)
INSERT INTO leads AS l (account_id, instance_name, phone, is_lid, push_name, direction_id,
                        ctwa_clid, ad_source_id, ad_source_url, ad_title, ad_source_type,
                        referral, referral_at)
SELECT i.account_id, c.instance_name, c.contact, c.is_lid, c.push_name,
       COALESCE({AD_DIRECTION.format(account="i.account_id", ad_id="(c.ref->>'source_id')")},
                i.default_direction_id),
       c.ref->>'ctwa_clid', c.ref->>'source_id', c.ref->>'source_url', c.ref->>'title', c.ref->>'source_type',
       c.ref->'record', (c.ref->>'at')::timestamptz
FROM chats c JOIN whatsapp_instances i ON i.name = c.instance_name
ORDER BY c.instance_name, c.contact
{LEAD_CONFLICT}
"""

DIALOGS_SQL = """
WITH chats AS (
    SELECT instance_name, contact,
           count(*) FILTER (WHERE role = 'client')::int AS client_count,
           min(created_at) FILTER (WHERE role = 'client') AS first_client_at,
           max(created_at) FILTER (WHERE role = 'client') AS last_client_at,
           max(created_at) FILTER (WHERE role = 'operator') AS last_operator_at,
           max(created_at) AS last_at
    FROM messages WHERE id = ANY ($1::bigint[])
    GROUP BY instance_name, contact
)
INSERT INTO dialog_analysis AS d (account_id, instance_name, contact_phone, lead_id, direction_id,
                                  client_message_count, last_client_message_at, last_message_at,
                                  burst_started_at, bot_paused_until)
SELECT l.account_id, l.instance_name, l.phone, l.id, l.direction_id, c.client_count, c.last_client_at,
       c.last_at, c.first_client_at, c.last_operator_at + make_interval(secs => $2::float8)
FROM chats c JOIN leads l ON l.instance_name = c.instance_name AND l.phone = c.contact
ORDER BY c.instance_name, c.contact
ON CONFLICT (instance_name, contact_phone) DO UPDATE SET
    lead_id = EXCLUDED.lead_id,
    direction_id = COALESCE(EXCLUDED.direction_id, d.direction_id),
    client_message_count = d.client_message_count + EXCLUDED.client_message_count,
    last_client_message_at = GREATEST(d.last_client_message_at, EXCLUDED.last_client_message_at),
    last_message_at = GREATEST(d.last_message_at, EXCLUDED.last_message_at),
    burst_started_at = COALESCE(d.burst_started_at, EXCLUDED.burst_started_at),
    bot_paused_until = GREATEST(d.bot_paused_until, EXCLUDED.bot_paused_until),
    updated_at = now()
"""

# core.jobs' debounce, per dialog, timed from the messages' receipt
LINK_SQL = f"""
WITH linked AS (
    UPDATE messages m SET dialog_id = d.id
    FROM dialog_analysis d
    WHERE m.id = ANY ($1::bigint[]) AND d.instance_name = m.instance_name AND d.contact_phone = m.contact
    RETURNING m.dialog_id, m.created_at, d.account_id
)
INSERT INTO jobs (name, key, payload, run_at, first_queued_at, tenant)
SELECT $2::text, 'dialog:' || dialog_id, jsonb_build_object('dialog_id', dialog_id),
       max(created_at) + make_interval(secs => $3::float8), min(created_at), min(account_id)
FROM linked GROUP BY dialog_id ORDER BY dialog_id
{keyed_conflict("debounce", "$4::float8")}
"""


async def drain(pool: asyncpg.Pool, settings: Settings, batch: int = BATCH) -> int:
    """Link one batch of waiting messages; returns how many (0 when none, or another drain runs).

    A batch of one that fails on bad data sets its message aside and counts it as done.
    """
    ids: list[int] = []
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(SESSION)
            parts = await lock_partitions(conn, batch)
            if not parts:
                return 0
            claimed = await conn.fetchrow(CLAIM_SQL, batch, parts)
            assert claimed is not None  # an aggregate: always one row
            ids = list(claimed["ids"] or [])
            if not ids:
                return 0
            if claimed["lids"]:
                await lids.link(conn, ids)
            await conn.execute(LEADS_SQL, ids)
            await conn.execute(DIALOGS_SQL, ids, settings.operator_pause_hours * 3600.0)
            await conn.execute(LINK_SQL, ids, DIALOG_JOB, settings.buffer_seconds, settings.buffer_max_seconds)
    except DATA_ERRORS as exc:
        if len(ids) != 1:
            raise
        await set_aside(pool, ids[0], exc)
        return 1
    INTAKE_DRAINED.inc(len(ids))
    INTAKE_LAG.observe(max(0.0, claimed["lag"]))
    return len(ids)


async def lock_partitions(conn: asyncpg.Connection, batch: int) -> list[int]:
    """Lock (for this transaction) partitions holding about `batch` waiting messages, skipping the
    ones other drains hold; [] when nothing waits or every waiting partition is taken."""
    waiting = await conn.fetch(WAITING_SQL, 2 * batch)
    start = random.randrange(PARTITIONS)  # noqa: S311  # processes starting at different partitions share the work
    order = sorted(waiting, key=lambda r: (r["part"] - start) % PARTITIONS)
    chunk: list[int] = []
    held = 0
    for i, row in enumerate(order):
        chunk.append(row["part"])
        held += row["n"]
        if held >= batch or i == len(order) - 1:
            locked: list[int] = await conn.fetchval(LOCK_SQL, chunk, LOCK_KEY)
            if locked:
                return locked
            chunk, held = [], 0  # all held by other drains: try the next ones
    return []


async def set_aside(pool: asyncpg.Pool, message_id: int, exc: Exception) -> None:
    error = f"{type(exc).__name__}: {exc}"[:500]
    await pool.execute("UPDATE messages SET intake_error = $2 WHERE id = $1", message_id, error)
    log.error("bot.message_set_aside", message_id=message_id, error=error)


class DrainLoop:
    """The worker loop's step. After a batch failed on bad data, it goes one message at a time for
    a batch's worth of messages, which sets the bad one aside, then back to whole batches."""

    def __init__(self) -> None:
        self.one_by_one = 0  # messages left to take singly
        self.quiet = 0  # looks in a row that found nothing

    async def __call__(self, ctx: AppContext) -> float:
        batch = 1 if self.one_by_one else BATCH
        try:
            done = await drain(ctx.pool, ctx.settings, batch)
        except DATA_ERRORS as exc:
            log.warning("bot.drain_failed", error=f"{type(exc).__name__}: {exc}"[:500],
                        then="one message at a time")
            self.one_by_one = BATCH
            return 0.0
        if self.one_by_one:
            self.one_by_one = self.one_by_one - 1 if done else 0
        # At once again after a full batch (or while going singly). Otherwise a message may have
        # arrived without a NOTIFY (others were waiting when it was inserted; its commit may land
        # after this look): look again after DRAIN_MIN_INTERVAL, then at doubling intervals while
        # nothing comes, up to the safety poll; a NOTIFY cuts any of these waits short.
        if done >= batch:
            return 0.0
        self.quiet = 0 if done else self.quiet + 1
        return min(DRAIN_MIN_INTERVAL * 2.0 ** min(self.quiet, 16), ctx.settings.intake_poll_seconds)
