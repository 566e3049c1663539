"""Per-CRM request pacing, shared by every sync job of one process.

amoCRM allows 7 requests/s per integration and Bitrix24 drains 2 requests/s per portal; both
punish bursts (429, then 403 for amoCRM; 503 QUERY_LIMIT_EXCEEDED for Bitrix24). Each limiter
spaces requests at least `1 / rate` seconds apart (plus a small margin for network jitter), and a
throttling answer pauses it for everyone who shares it.

The limiters of one app live in a `LimiterRegistry` attached to the app's HTTP session (the
session lives exactly as long as the app, and AppContext, a plain dataclass, is not hashable),
through a WeakKeyDictionary: two apps in one process never share or leak limiters. Several
processes each pace themselves; run fewer sync workers per CRM or lower
`crm_connections.rate_limit_per_second` when many processes share one integration.
"""

from __future__ import annotations

import asyncio
import weakref

import aiohttp

from core.context import AppContext

# spacing is this much wider than 1/rate, so arrival jitter at the CRM never looks like a burst
MARGIN = 0.05


class Backlogged(Exception):
    """More requests are already waiting than `max_wait` allows; come back in `wait` seconds."""

    def __init__(self, wait: float) -> None:
        super().__init__(f"about {wait:.1f}s of requests already queued")
        self.wait = wait


class RateLimiter:
    """At most `rate` requests per second, evenly spaced; `pause` holds everyone back."""

    def __init__(self, rate: float) -> None:
        self._lock = asyncio.Lock()
        self._next = 0.0
        self._waiting = 0
        self.rate = rate
        self.interval = (1.0 + MARGIN) / rate

    def set_rate(self, rate: float) -> None:
        self.rate = rate
        self.interval = (1.0 + MARGIN) / rate

    def expected_wait(self) -> float:
        """Seconds a new caller would wait: the current gap plus everyone already queued."""
        gap = self._next - asyncio.get_running_loop().time()
        return max(gap, 0.0) + self._waiting * self.interval

    async def acquire(self, max_wait: float | None = None) -> None:
        """Wait for this caller's turn (first come, first served). With `max_wait`, raise
        Backlogged instead of queueing behind more than that, so a backlog of syncs hands its
        worker slots back (to chatbot replies, say) rather than sleeping in them."""
        if max_wait is not None and (expected := self.expected_wait()) > max_wait:
            raise Backlogged(expected)
        loop = asyncio.get_running_loop()
        self._waiting += 1
        try:
            async with self._lock:
                # a pause() during the sleep moves _next; waiting for a moment in time, not an event
                while (wait := self._next - loop.time()) > 0:  # noqa: ASYNC110
                    await asyncio.sleep(wait)
                self._next = loop.time() + self.interval
        finally:
            self._waiting -= 1

    def pause(self, seconds: float) -> None:
        """The CRM said "too many requests": nobody sharing this limiter sends for `seconds`."""
        until = asyncio.get_running_loop().time() + seconds
        self._next = max(self._next, until)


class LimiterRegistry:
    """The limiters of one app, by key ("amocrm:<connection>", "bitrix24:<portal host>")."""

    def __init__(self) -> None:
        self._limiters: dict[str, RateLimiter] = {}

    def get(self, key: str, rate: float) -> RateLimiter:
        limiter = self._limiters.get(key)
        if limiter is None:
            limiter = self._limiters[key] = RateLimiter(rate)
        elif limiter.rate != rate:  # the connection's configured rate changed since
            limiter.set_rate(rate)
        return limiter


_REGISTRIES: weakref.WeakKeyDictionary[aiohttp.ClientSession, LimiterRegistry] = weakref.WeakKeyDictionary()


def limiters(ctx: AppContext) -> LimiterRegistry:
    """This app's limiter registry (created on first use, dropped with the app's HTTP session)."""
    registry = _REGISTRIES.get(ctx.http)
    if registry is None:
        registry = _REGISTRIES[ctx.http] = LimiterRegistry()
    return registry
