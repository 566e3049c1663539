"""A few seconds' memory of configuration rows the webhooks need before anything is written.

Every webhook needs its instance or number (secret, account) first; reading it from the database
would double intake's round trips, so a process keeps each row it has seen for `ttl` seconds (a
changed secret takes effect within that time). Unknown keys are not cached, so a newly configured
instance or number works at once. `TtlValue` keeps one value read whole (every app secret, every
webhook secret) the same way; `find` looks for a match in it and, finding none, reads it anew once,
so a secret configured in the last seconds is not refused.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

import asyncpg

V = TypeVar("V")
T = TypeVar("T")
MAX_ENTRIES = 10_000  # bound memory against a flood of made-up keys


class TtlCache(Generic[V]):
    def __init__(self, load: Callable[[asyncpg.Pool, str], Awaitable[V | None]], ttl: float) -> None:
        self.load = load
        self.ttl = ttl
        self._entries: dict[str, tuple[float, V]] = {}

    async def get(self, pool: asyncpg.Pool, key: str) -> V | None:
        now = time.monotonic()
        hit = self._entries.get(key)
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await self.load(pool, key)
        if value is None:
            self._entries.pop(key, None)
            return None
        if len(self._entries) > MAX_ENTRIES:
            self._entries.clear()
        self._entries[key] = (now + self.ttl, value)
        return value

    def forget(self, key: str) -> None:
        self._entries.pop(key, None)


class TtlValue(Generic[V]):
    def __init__(self, load: Callable[[asyncpg.Pool], Awaitable[V]], ttl: float) -> None:
        self.load = load
        self.ttl = ttl
        self._value: tuple[float, V] | None = None

    async def get(self, pool: asyncpg.Pool, *, fresh: bool = False) -> V:
        now = time.monotonic()
        if fresh or self._value is None or self._value[0] <= now:
            self._value = (now + self.ttl, await self.load(pool))
        return self._value[1]

    async def find(self, pool: asyncpg.Pool, match: Callable[[V], T | None]) -> T | None:
        """`match` of the kept value; when it finds nothing, of the value read anew (once)."""
        found = match(await self.get(pool))
        return found if found is not None else match(await self.get(pool, fresh=True))
