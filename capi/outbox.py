"""The outbox sender: delivers `pending` capi_events_log rows to Meta, each (dialog, level) once.

A run works in `capi_concurrency` lanes. Each lane loops until nothing is due:

1. claim up to `capi_batch_size` due rows with `FOR UPDATE SKIP LOCKED`, in one statement that also
   increments `attempts` and sets `lease_until` one lease ahead. That timestamp is the claim:
   another sender (any process) does not see the rows as claimable until the lease runs out, and
   the incremented `attempts` is the fencing token every later write must match. A lane that
   claims a full batch starts again a lane that had found nothing (rows are still arriving);
2. group them by dataset, token and test code (one request each, ≤ 1000 events);
3. check each event locally (age under 7 days, dataset, token, click id, Purchase value), so one
   bad event never sinks a batch; the others are posted;
4. read Meta's answer (`capi.errors`): success only when `events_received` equals the number
   sent; a transient failure reschedules the rows with a growing delay (until the event would be
   older than 7 days: then `error`, "expired"). When Meta says it is throttling (codes 4, 17, 341,
   613, 80000–80014), the token rests: its rows wait at least `capi_throttle_seconds`, and the
   run's other batches for that token are handed back unposted, so a throttled token is not
   hammered by the rest of the run; a permanent failure that concerns one event (code
   100) is isolated by bisecting the batch, so the rest is delivered; a request-wide one (token,
   dataset, permission) fails every row with a hint. A refused event name (2804066) is not
   bisected: the batch is split by event name, each name sent once, and a name refused alone is
   remembered for its dataset (`capi.refusals`): its rows, and later rows with that name, fail
   with the hint without another request;
5. record the outcome with set-based statements fenced by `attempts`: a success sets the row
   (`success`, `sent_at`, `response` with `fbtrace_id`) and the dialog's
   `capi_<level>_sent/_sent_at/_event_id` in ONE statement, so they commit together.

Delivery guarantee — at least once. If the process dies (or the commit fails) after Meta
answered 200 and before step 5 commits, the rows stay `pending` with their claim; when the lease
runs out the next sender claims them again and posts them again, with the same `event_id`. Meta
does not deduplicate business-messaging events, so in that window Meta may count an event twice
(`tests/capi/test_outbox_crash.py` shows it). The same holds for an answer lost on the way (a
timeout, a dropped connection, an unreadable 200): Meta may have the events, and they are retried
as transient. Apart from these, no row is posted twice: a claimed row is invisible to other
senders while its lease lasts, a lane stops posting before its lease can run out (unposted rows
are handed back at once), and a sender whose lease expired cannot overwrite the outcome written
by the sender that took over. An acknowledgement of fewer events than sent is not retried at all.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import aiohttp
import asyncpg

from capi import refusals
from capi.errors import HINTS, INVALID_EVENT_TYPE
from capi.graph import GraphAnswer, GraphClient
from capi.hooks import DeliveryHook
from capi.ledger import Claimed, Outcome, claim, commit_outcomes, commit_success
from capi.payload import ACTION_SOURCE
from core.jobs import backoff_delay
from core.logging import get_logger
from core.metrics import CAPI_EVENTS
from core.settings import Settings

log = get_logger("capi.outbox")

MAX_AGE = timedelta(days=7)
AGE_MARGIN = timedelta(minutes=1)  # the request takes time too: never post an event on the edge
EXPIRED_HINT = HINTS[(100, 2804003)]
REFUSED_NAME_HINT = HINTS[(100, INVALID_EVENT_TYPE)]


@dataclass
class RunStats:
    sent: int = 0
    failed: int = 0
    retried: int = 0
    requests: int = 0

    def add(self, outcomes: Iterable[Outcome]) -> None:
        for o in outcomes:
            if o.status == "success":
                self.sent += 1
            elif o.status == "error":
                self.failed += 1
            elif o.attempted:
                self.retried += 1


class Outbox:
    """One sender run over the shared outbox; any number may run at once, in any processes."""

    def __init__(
        self, pool: asyncpg.Pool, http: aiohttp.ClientSession, settings: Settings, delivered: DeliveryHook,
        graph: GraphClient | None = None,
    ) -> None:
        self.pool = pool
        self.delivered = delivered
        self.settings = settings
        self.graph = graph or GraphClient(http, settings)
        self.extras: dict[str, Any] = {"partner_agent": settings.partner_agent} if settings.partner_agent else {}
        # a claim must outlast at least one request with room to record it, or nothing could be sent
        self.lease = max(settings.capi_lease_seconds, 2 * settings.meta_timeout_seconds + 5.0)
        self.stats = RunStats()
        self.resting: dict[str, float] = {}  # token → monotonic time before which it is not posted
        self._lanes: asyncio.TaskGroup
        self._running = 0  # lanes of this run still working

    async def run(self) -> RunStats:
        """Deliver everything due, `capi_concurrency` requests at a time; returns what happened."""
        async with asyncio.TaskGroup() as lanes:
            self._lanes = lanes
            for _ in range(self.settings.capi_concurrency):
                self._start_lane()
        return self.stats

    def _start_lane(self) -> None:
        self._running += 1
        self._lanes.create_task(self._lane())

    async def _lane(self) -> None:
        try:
            await self._lane_loop()
        finally:
            self._running -= 1

    async def _lane_loop(self) -> None:
        while True:
            claimed_at = time.monotonic()
            rows = await self._claim()
            if not rows:
                return
            if len(rows) >= self.settings.capi_batch_size and self._running < self.settings.capi_concurrency:
                # more may be due (rows arrive while a run works): bring back a lane that found none
                self._start_lane()
            # stop posting while a whole request (its timeout) still fits in the lease, with room to record
            deadline = claimed_at + self.lease - min(5.0, self.lease / 10) - self.settings.meta_timeout_seconds
            handed_back = False
            for group in _groups(rows):
                outcomes = await self._deliver_group(group, deadline)
                await self._record(outcomes)
                handed_back = handed_back or any(not o.attempted for o in outcomes)
            if handed_back:
                return  # this lane is too slow for its leases right now; the next run takes over

    async def _claim(self) -> list[Claimed]:
        return await claim(self.pool, self.settings.capi_batch_size, self.lease)

    async def _deliver_group(self, rows: list[Claimed], deadline: float) -> list[Outcome]:
        now = datetime.now(UTC)
        outcomes: list[Outcome] = []
        sendable: list[Claimed] = []
        for row in rows:
            problem = _local_problem(row, now)
            if problem is None:
                sendable.append(row)
            else:
                outcomes.append(problem)
        refused = await refusals.active(self.pool, ((r.dataset or "", r.event_name) for r in sendable))
        if refused:
            outcomes += [_refused(r, refused[(r.dataset or "", r.event_name)])
                         for r in sendable if (r.dataset or "", r.event_name) in refused]
            sendable = [r for r in sendable if (r.dataset or "", r.event_name) not in refused]
        if sendable:
            outcomes.extend(await self._deliver(sendable, deadline))
        return outcomes

    async def _deliver(self, rows: list[Claimed], deadline: float) -> list[Outcome]:
        if time.monotonic() > deadline:
            return [Outcome(r, "pending", attempted=False) for r in rows]
        first = rows[0]
        assert first.dataset and first.token  # _local_problem refused rows without them
        rest = self.resting.get(first.token, 0.0) - time.monotonic()
        if rest > 0:  # Meta throttled this token earlier in the run: back to the outbox, unposted
            return [Outcome(r, "pending", delay=rest, attempted=False) for r in rows]
        answer = await self.graph.send(first.dataset, first.token, [r.event_json or "" for r in rows],
                                       first.test_event_code)
        self.stats.requests += 1
        if answer.kind == "success":
            if answer.events_received == len(rows):
                return [Outcome(r, "success", response=answer.response) for r in rows]
            return [_partial(r, answer) for r in rows]
        if answer.kind == "transient":
            if answer.error is not None and answer.error.throttled and self.settings.capi_throttle_seconds:
                self.resting[first.token] = time.monotonic() + self.settings.capi_throttle_seconds
                log.warning("capi.token_throttled", dataset=first.dataset, code=answer.error.meta_code,
                            rest_seconds=self.settings.capi_throttle_seconds)
            return [self._retry(r, answer) for r in rows]
        assert answer.error is not None
        if answer.error.subcode == INVALID_EVENT_TYPE and not answer.error.request_wide:
            return await self._refused_name(rows, answer, deadline)
        if answer.error.request_wide or len(rows) == 1:
            return [Outcome(r, "error", answer.error.message, answer.error.hint, answer.response) for r in rows]
        # Meta rejects the whole batch for one bad event: split it until the offenders stand alone
        middle = len(rows) // 2
        left, right = await asyncio.gather(
            self._deliver(rows[:middle], deadline), self._deliver(rows[middle:], deadline)
        )
        return left + right

    async def _refused_name(self, rows: list[Claimed], answer: GraphAnswer, deadline: float) -> list[Outcome]:
        """Meta refused an event name (which one, its answer does not say): with one name in the
        batch it is that one, remembered for the dataset; with several, each name is sent alone."""
        assert answer.error is not None
        by_name: dict[str, list[Claimed]] = {}
        for r in rows:
            by_name.setdefault(r.event_name, []).append(r)
        if len(by_name) > 1:
            parts = await asyncio.gather(*(self._deliver(group, deadline) for group in by_name.values()))
            return [o for part in parts for o in part]
        await refusals.remember(self.pool, rows[0].id, answer.error.message, answer.response)
        log.warning("capi.event_name_refused", dataset=rows[0].dataset, event_name=rows[0].event_name,
                    count=len(rows), hint=REFUSED_NAME_HINT)
        return [Outcome(r, "error", answer.error.message, answer.error.hint, answer.response) for r in rows]

    def _retry(self, row: Claimed, answer: GraphAnswer) -> Outcome:
        assert answer.error is not None
        message = answer.error.message
        delay = backoff_delay(row.attempts, self.settings.capi_retry_base_seconds,
                              self.settings.capi_retry_max_seconds)
        if answer.error.throttled:
            delay = max(delay, self.settings.capi_throttle_seconds)
        left = (row.event_time + MAX_AGE - AGE_MARGIN - datetime.now(UTC)).total_seconds()
        if left < 1.0:
            return Outcome(row, "error", f"expired: not delivered within 7 days (last failure: {message})",
                           EXPIRED_HINT, answer.response)
        return Outcome(row, "pending", f"attempt {row.attempts} failed, will retry: {message}", None,
                       answer.response, delay=min(delay, left))

    async def _record(self, outcomes: list[Outcome]) -> None:
        by_answer: dict[int, list[Outcome]] = {}
        others: list[Outcome] = []
        for o in outcomes:
            if o.status == "success":
                by_answer.setdefault(id(o.response), []).append(o)
            else:
                others.append(o)
        for group in by_answer.values():
            await self._commit_success(group)
        if others:
            await self._commit_others(others)
        self.stats.add(outcomes)

    async def _commit_success(self, outcomes: list[Outcome]) -> None:
        """Rows and the dialogs' sent flags in one transaction."""
        rows = [o.row for o in outcomes]
        ids = await commit_success(self.pool, outcomes, self.extras, self.delivered)
        trace = (outcomes[0].response or {}).get("fbtrace_id")
        for (level, name, dataset), group in _by_level([r for r in rows if r.id in ids]).items():
            CAPI_EVENTS.labels("success", name).inc(len(group))
            log.info("capi.event_sent", event_ids=[r.event_id for r in group], count=len(group),
                     dataset=dataset, level=level, event_name=name, fbtrace_id=trace)

    async def _commit_others(self, outcomes: list[Outcome]) -> None:
        ids = await commit_outcomes(self.pool, outcomes, self.extras)
        groups: dict[tuple[str, str | None, str | None], list[Outcome]] = {}
        for o in outcomes:
            if o.row.id in ids and o.attempted:
                groups.setdefault((o.status, o.error, o.hint), []).append(o)
        for (status, error, hint), failed in groups.items():
            for (level, name, dataset), rows in _by_level([o.row for o in failed]).items():
                CAPI_EVENTS.labels("error" if status == "error" else "retry", name).inc(len(rows))
                log.warning("capi.event_failed", event_ids=[r.event_id for r in rows], count=len(rows),
                            dataset=dataset, level=level, event_name=name, final=status == "error",
                            retry_in=round(max(o.delay for o in failed), 1) if status == "pending" else None,
                            error=error, hint=hint)


def _by_level(rows: list[Claimed]) -> dict[tuple[int, str, str | None], list[Claimed]]:
    """Rows by (level, event name, dataset): one log line each instead of one per event."""
    groups: dict[tuple[int, str, str | None], list[Claimed]] = {}
    for r in rows:
        groups.setdefault((r.event_level, r.event_name, r.dataset), []).append(r)
    return groups


def _groups(rows: list[Claimed]) -> list[list[Claimed]]:
    groups: dict[tuple[str | None, str | None, str | None], list[Claimed]] = {}
    for r in rows:
        groups.setdefault((r.dataset, r.token, r.test_event_code), []).append(r)
    return list(groups.values())


def _local_problem(row: Claimed, now: datetime) -> Outcome | None:
    """What Meta would refuse for this event alone; caught here so it cannot sink its batch."""
    if now - row.event_time > MAX_AGE - AGE_MARGIN:
        return Outcome(row, "error", "expired: the event is older than 7 days, Meta no longer accepts it",
                       EXPIRED_HINT)
    if not row.dataset:
        return Outcome(row, "error", "the event has no dataset (pixel_id)", "set pixel_id on the direction")
    if not row.token:
        return Outcome(row, "error", "no Meta access token for the direction's ad account or account",
                       HINTS[(190, None)])
    if not row.event_json or row.event_json == "null":
        return Outcome(row, "error", "the row holds no event to send",
                       "record the level again (qualibot capi retry)")
    if row.action_source == ACTION_SOURCE and not row.ctwa_clid:
        return Outcome(row, "error", "the event has no ctwa_clid, which business messaging events require",
                       HINTS[(100, 2804087)])
    if row.event_name == "Purchase" and not row.has_value:
        return Outcome(row, "error", "a Purchase event needs value and currency", HINTS[(100, 2804009)])
    return None


def _refused(row: Claimed, refusal: str) -> Outcome:
    return Outcome(row, "error", f"not sent: Meta refused the event name {row.event_name} for dataset "
                   f"{row.dataset} ({refusal})", REFUSED_NAME_HINT)


def _partial(row: Claimed, answer: GraphAnswer) -> Outcome:
    return Outcome(
        row, "error", f"Meta acknowledged {answer.events_received} of {answer.sent} events of this request",
        "Not resent automatically: Meta does not deduplicate business-messaging events, so a resend could "
        "count some twice. Check Events Manager, then resend with `qualibot capi retry` if they are missing.",
        answer.response,
    )

