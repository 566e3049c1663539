"""CRM request pacing for the whole deployment, coordinated through PostgreSQL.

amoCRM allows 7 requests/s per integration and Bitrix24 drains 2 requests/s per portal; both
punish bursts (429, then 403 for amoCRM; 503 QUERY_LIMIT_EXCEEDED for Bitrix24), and both count
every request of the account, whichever qualibot process sent it. So the pace is kept in the
database every process shares, in `crm_rate_slots` (migrations/010_llm_crm.sql), one row per
bucket ("amocrm:<connection>", "bitrix24:<portal host>").

How: virtual scheduling (GCRA with a burst of one). The row holds the earliest moment the next
request may go out. A request reserves its moment with ONE statement — an upsert that moves the
row `interval` further on and returns how long to wait — then sleeps that long with no
connection and no lock held. Why this and not the alternatives:
- a token-bucket row or advisory-lock-guarded slots would need a transaction held across the
  wait, or a poll loop; the reservation is one round trip per request (about a millisecond,
  against a CRM request of 100 ms or more) and the row lock lasts only that statement;
- even spacing at `(1 + MARGIN) / rate` never bursts, so no 1-second window at the CRM sees more
  than `rate` requests, even from many processes; throughput stays within MARGIN of the limit;
- the database's clock decides, so processes on different machines agree whatever their clocks.
A throttling answer (`pause`) moves the row past the CRM's Retry-After for everyone. A reserved
moment that is not used (a cancelled sync) is simply lost: the pace errs on the slow side.
"""

from __future__ import annotations

import asyncio

from core.errors import Retryable
from core.jobs import Executor

# spacing is this much wider than 1/rate, so arrival jitter at the CRM never looks like a burst
MARGIN = 0.1

_RESERVE_SQL = """
INSERT INTO crm_rate_slots AS s (key, next_at)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE
    SET next_at = GREATEST(s.next_at, clock_timestamp()) + make_interval(secs => $2)
    WHERE $3::float8 IS NULL OR s.next_at <= clock_timestamp() + make_interval(secs => $3)
RETURNING extract(epoch FROM s.next_at - clock_timestamp())::float8 - $2 AS wait"""

_QUEUED_SQL = "SELECT extract(epoch FROM next_at - clock_timestamp())::float8 FROM crm_rate_slots WHERE key = $1"

_PAUSE_SQL = """
INSERT INTO crm_rate_slots AS s (key, next_at)
VALUES ($1, clock_timestamp() + make_interval(secs => $2))
ON CONFLICT (key) DO UPDATE SET next_at = GREATEST(s.next_at, clock_timestamp() + make_interval(secs => $2))"""


class Backlogged(Retryable):
    """More requests are already waiting than `max_wait` allows; come back in `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"about {wait:.1f}s of requests already queued", retry_after=wait)
        self.wait = wait


class RateLimiter:
    """At most `rate` requests per second for `key`, across every process on the database."""

    def __init__(self, db: Executor, key: str, rate: float) -> None:
        self.db = db
        self.key = key
        self.rate = rate
        self.interval = (1.0 + MARGIN) / rate

    async def reserve(self, max_wait: float | None = None) -> float:
        """Reserve the next moment; returns the seconds until it. With `max_wait`, raise
        Backlogged instead of queueing behind more than that, so a backlog of syncs hands its
        worker slots back (to chatbot replies, say) rather than sleeping in them."""
        wait = await self.db.fetchval(_RESERVE_SQL, self.key, self.interval, max_wait)
        if wait is None:  # the row is further out than max_wait
            raise Backlogged(float(await self.db.fetchval(_QUEUED_SQL, self.key) or 0.0))
        return max(float(wait), 0.0)

    async def acquire(self, max_wait: float | None = None) -> None:
        """Wait for this caller's turn."""
        wait = await self.reserve(max_wait)
        if wait > 0:
            await asyncio.sleep(wait)

    async def pause(self, seconds: float) -> None:
        """The CRM said "too many requests": nobody on this bucket sends for `seconds`."""
        await self.db.execute(_PAUSE_SQL, self.key, seconds)
