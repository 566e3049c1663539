"""The limiter: requests paced at the rate, shared per key within one app, separate between apps."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest

from core.context import AppContext
from core.settings import Settings
from crm.ratelimit import Backlogged, RateLimiter, limiters
from tests.fakes.amocrm import window_max


async def test_concurrent_callers_never_exceed_the_rate() -> None:
    limiter = RateLimiter(20.0)
    times: list[float] = []

    async def call() -> None:
        await limiter.acquire()
        times.append(time.monotonic())

    await asyncio.gather(*(call() for _ in range(25)))
    assert len(times) == 25 and window_max(times) <= 20


async def test_a_pause_holds_everyone_back() -> None:
    limiter = RateLimiter(1000.0)
    await limiter.acquire()
    limiter.pause(0.2)
    started = time.monotonic()
    await limiter.acquire()
    assert time.monotonic() - started >= 0.19


async def test_registries_belong_to_one_app(make_settings: Callable[..., Settings], pool: Any) -> None:
    async with aiohttp.ClientSession() as one, aiohttp.ClientSession() as two:
        ctx1 = AppContext(make_settings(), pool, one, None)
        ctx2 = AppContext(make_settings(), pool, two, None)
        a = limiters(ctx1).get("amocrm:amo-main", 7)
        assert limiters(ctx1).get("amocrm:amo-main", 7) is a  # every job of the app shares it
        assert limiters(ctx2).get("amocrm:amo-main", 7) is not a  # another app has its own
        assert limiters(ctx1).get("amocrm:amo-main", 3) is a and a.rate == 3  # a config change applies


async def test_a_long_queue_is_refused_instead_of_joined() -> None:
    limiter = RateLimiter(10.0)
    waiting = [asyncio.create_task(limiter.acquire()) for _ in range(5)]  # about 0.5 s of turns
    await asyncio.sleep(0)
    with pytest.raises(Backlogged) as busy:
        await limiter.acquire(max_wait=0.2)
    assert busy.value.wait > 0.2
    await asyncio.gather(*waiting)
    await limiter.acquire(max_wait=0.2)  # the queue drained: a turn again
