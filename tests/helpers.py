"""Small helpers the tests share: polling with a deadline, running an app on a real socket."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, TypeVar

import aiohttp
import asyncpg
from aiohttp import web

T = TypeVar("T")


async def wait_for(
    probe: Callable[[], Awaitable[T]], *, timeout: float = 10.0, interval: float = 0.05, what: str = ""
) -> T:
    """Poll `probe` until it returns something truthy; fail with `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = await probe()
        if last:
            return last
        await asyncio.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what or probe}; last value {last!r}")


async def wait_healthy(http: aiohttp.ClientSession, url: str, *, timeout: float = 60.0, what: str = "") -> None:
    """Poll `url`/healthz until it answers 200 (a server still starting refuses the connection)."""

    async def healthy() -> bool:
        try:
            async with http.get(f"{url}/healthz") as resp:
                return resp.status == 200
        except aiohttp.ClientConnectionError:
            return False

    await wait_for(healthy, timeout=timeout, what=what or f"{url}/healthz to answer 200")


@asynccontextmanager
async def running(app: web.Application, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve `app` on a free port of 127.0.0.1; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


async def refusing_pool() -> asyncpg.Pool:
    """A pool whose database is down: its server's port refuses connections (a port held and let go)."""
    from core.db import create_pool

    with socket.socket() as held:
        held.bind(("127.0.0.1", 0))
        port = held.getsockname()[1]
    return await create_pool(f"postgresql://postgres@127.0.0.1:{port}/down", max_size=1, min_size=0)


@asynccontextmanager
async def notifications(pool: Any, channel: str) -> AsyncIterator[list[str]]:
    """The NOTIFYs on `channel` (e.g. the CAPI sender's wake-ups) a listening connection sees meanwhile."""
    seen: list[str] = []

    def heard(_conn: object, _pid: int, name: str, _payload: object) -> None:
        seen.append(name)

    async with pool.acquire() as conn:
        await conn.add_listener(channel, heard)
        try:
            yield seen
        finally:
            await conn.remove_listener(channel, heard)
