"""The CAPI sender: a `core.jobs` loop that drains the outbox (`capi.outbox`) when woken.

The transaction that makes a row pending calls `schedule_send`, which NOTIFYs `CAPI_CHANNEL`:
PostgreSQL delivers it when that transaction commits, so every worker's sender loop wakes with the
row already visible, and a rolled-back decision wakes nobody. After a run the loop sleeps until the
earliest pending row is due (a retry's backoff, a lease running out), a wake-up, or the worker's
safety poll. Any number of loops, in any processes, may run at once: the outbox's SKIP LOCKED
claims make that safe (`capi.ledger`).
"""

from __future__ import annotations

from functools import partial

from capi.hooks import DeliveryHook
from capi.ledger import next_due_in
from capi.outbox import Outbox
from core.context import AppContext
from core.jobs import IDLE, Executor, JobRegistry, notify
from core.logging import get_logger

log = get_logger("capi.jobs")

SEND_LOOP = "capi.send"
CAPI_CHANNEL = "qualibot_capi"
# a run that finds due rows it could not claim (another sender holds them) looks again this soon
_MIN_RESCHEDULE = 0.1


async def schedule_send(db: Executor) -> None:
    """Wake the senders when this transaction commits. Call it with the connection of the
    transaction that made rows pending (or the pool, for rows already committed)."""
    await notify(db, CAPI_CHANNEL)


async def send_step(ctx: AppContext, *, delivered: DeliveryHook) -> float:
    """One sender run if a row is due; returns the seconds until the next one is (`IDLE`: none)."""
    delay = await next_due_in(ctx.pool)  # one look, instead of a claim per lane, when nothing is due
    if delay is None or delay > 0:
        return IDLE if delay is None else delay
    stats = await Outbox(ctx.pool, ctx.http, ctx.settings, delivered).run()
    if stats.requests or stats.failed:
        log.info("capi.sender_run", sent=stats.sent, failed=stats.failed, retried=stats.retried,
                 requests=stats.requests)
    delay = await next_due_in(ctx.pool)
    return IDLE if delay is None else max(delay, _MIN_RESCHEDULE)


def register_jobs(registry: JobRegistry[AppContext], *, delivered: DeliveryHook) -> None:
    """Register this package's worker loop by name; `delivered` records a delivery on the dialog."""
    registry.register_loop(SEND_LOOP, partial(send_step, delivered=delivered), wake=CAPI_CHANNEL)
