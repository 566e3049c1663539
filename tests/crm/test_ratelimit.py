"""The limiter: one pace per CRM bucket for every process on the database (issue 13.5).

No clock is read here: the reserved moments come from the database (`reserve` returns the wait
until each), so the spacing is checked exactly, however slow the machine. Wall-clock rates at
the CRM are measured in bench/crm_ratelimit.py with four processes."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator

import asyncpg
import pytest

from core.db import create_pool
from crm.ratelimit import Backlogged, RateLimiter

KEY = "amocrm:amo-main"


@pytest.fixture
async def second_pool(db: asyncpg.Pool, database_url: str) -> AsyncIterator[asyncpg.Pool]:
    """Another process's pool: its own connections to the same database."""
    other = await create_pool(database_url, max_size=4)
    yield other
    await other.close()


async def slots(db: asyncpg.Pool) -> float:
    """Where the bucket's row stands, in seconds from now (database clock)."""
    return float(await db.fetchval(
        "SELECT extract(epoch FROM next_at - clock_timestamp())::float8 FROM crm_rate_slots WHERE key = $1", KEY))


async def test_two_pools_share_one_budget(db: asyncpg.Pool, second_pool: asyncpg.Pool) -> None:
    one, two = RateLimiter(db, KEY, 7.0), RateLimiter(second_pool, KEY, 7.0)
    waits = await asyncio.gather(*(limiter.reserve() for _ in range(10) for limiter in (one, two)))
    # 20 reservations, 10 from each "process": one queue of 20 turns, not two of 10
    ahead = await slots(db)
    assert ahead == pytest.approx(20 * one.interval, abs=0.5)
    assert max(waits) == pytest.approx(19 * one.interval, abs=0.5)
    assert max(waits) > 10 * one.interval  # two separate budgets would end after 10 turns


async def test_turns_are_spaced_by_the_interval(db: asyncpg.Pool) -> None:
    limiter = RateLimiter(db, KEY, 2.0)
    waits = [await limiter.reserve() for _ in range(4)]
    gaps = [later - earlier for earlier, later in itertools.pairwise(waits)]
    # consecutive reservations a few ms apart: each turn lands one interval (1.05 / rate) after the last
    assert all(limiter.interval - 0.1 < gap <= limiter.interval for gap in gaps), gaps


async def test_a_pause_holds_every_process_back(db: asyncpg.Pool, second_pool: asyncpg.Pool) -> None:
    await RateLimiter(db, KEY, 1000.0).pause(30.0)  # one process met a 429 with Retry-After: 30
    wait = await RateLimiter(second_pool, KEY, 1000.0).reserve()
    assert 29.0 < wait <= 30.0


async def test_a_long_queue_is_refused_instead_of_joined(db: asyncpg.Pool, second_pool: asyncpg.Pool) -> None:
    for _ in range(5):
        await RateLimiter(db, KEY, 2.0).reserve()  # about 2.6 s of turns queued
    with pytest.raises(Backlogged) as busy:
        await RateLimiter(second_pool, KEY, 2.0).reserve(max_wait=1.0)
    assert busy.value.wait > 2.0
    assert await slots(db) == pytest.approx(busy.value.wait, abs=0.5)  # refused: nothing reserved
    assert await RateLimiter(second_pool, KEY, 2.0).reserve(max_wait=10.0) > 2.0


async def test_buckets_are_separate_and_a_new_rate_applies_at_once(db: asyncpg.Pool) -> None:
    await RateLimiter(db, KEY, 1.0).reserve()
    assert await RateLimiter(db, "bitrix24:clinic.bitrix24.ru", 1.0).reserve() == 0.0
    await RateLimiter(db, KEY, 1.0).reserve()
    faster = RateLimiter(db, KEY, 100.0)  # crm_connections.rate_limit_per_second was raised
    first = await faster.reserve()
    assert await faster.reserve() - first == pytest.approx(faster.interval, abs=0.05)
