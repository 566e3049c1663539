"""The sender job: `capi.send` drains the outbox (`capi.outbox`) and reschedules itself.

One coalescing key: however many decisions are recorded in a burst, one sender run is queued
(at the earliest requested time). A run that is already going does not absorb new enqueues, so a
decision committed during a run queues the next run; two runs may then overlap, which the
outbox's SKIP LOCKED claims make safe.
"""

from __future__ import annotations

from functools import partial

from capi.hooks import DeliveryHook
from capi.ledger import next_due_in
from capi.outbox import Outbox
from core.context import AppContext
from core.jobs import Executor, Job, JobRegistry, enqueue
from core.logging import get_logger

log = get_logger("capi.jobs")

SEND_JOB = "capi.send"
SEND_KEY = "outbox"
# a run that finds due rows it could not claim (another sender holds them) looks again this soon
_MIN_RESCHEDULE = 0.1


async def schedule_send(db: Executor, delay: float = 0.0) -> None:
    """Queue a sender run in `delay` seconds (coalesced with any queued run: the earlier time wins).

    Call it with the connection of the transaction that made rows pending. When a run is already
    queued early enough, it is only share-locked: workers claim jobs with SKIP LOCKED, so that run
    cannot start before this transaction commits (and so cannot miss its rows), while concurrent
    recorders share the lock instead of queueing behind one another on the job's row."""
    delay = max(delay, 0.0)
    queued = await db.fetchval(
        """SELECT 1 FROM jobs WHERE name = $1 AND key = $2 AND status = 'queued'
              AND run_at <= now() + make_interval(secs => $3)
           FOR SHARE""",
        SEND_JOB, SEND_KEY, delay,
    )
    if queued is None:
        await enqueue(db, SEND_JOB, {}, key=SEND_KEY, delay=delay, mode="coalesce", max_attempts=1000)


async def send_job(ctx: AppContext, job: Job, *, delivered: DeliveryHook) -> None:
    stats = await Outbox(ctx.pool, ctx.http, ctx.settings, delivered).run()
    if stats.requests or stats.failed:
        log.info("capi.sender_run", sent=stats.sent, failed=stats.failed, retried=stats.retried,
                 requests=stats.requests)
    delay = await next_due_in(ctx.pool)
    if delay is not None:
        await schedule_send(ctx.pool, max(delay, _MIN_RESCHEDULE))


def register_jobs(registry: JobRegistry[AppContext], *, delivered: DeliveryHook) -> None:
    """Register this package's job handlers by name; `delivered` records a delivery on the dialog."""
    registry.register(SEND_JOB, partial(send_job, delivered=delivered), backoff_base=1.0, backoff_max=60.0)
