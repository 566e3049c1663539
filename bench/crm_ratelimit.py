"""CRM rate limits across processes: 4 worker processes, one CRM account, the pace held in PostgreSQL.

Usage: .venv/bin/python bench/crm_ratelimit.py [--processes 4] [--concurrency 4] [--seconds 20]

A fake CRM (real HTTP on 127.0.0.1, in this process) answers every GET and notes its arrival time.
Each worker is its own OS process with its own database pool and HTTP session, running
`--concurrency` request loops through the real `crm.transport.send` and `crm.ratelimit.RateLimiter`
(as many sync jobs would), until `--seconds` have passed. Three runs, in one fresh database:

1. amoCRM, 7 requests/s, one bucket shared by all processes;
2. Bitrix24, 2 requests/s, the same;
3. baseline: each process paces itself (its own bucket), as qualibot did before, at 7/s.

Printed per run: requests, the most requests the CRM saw in any one second (a sliding window, and
in calendar seconds), and throughput (requests / time between the first and the last) as a ratio
of the limit. Targets for the shared runs: most per second ≤ the limit, throughput ≥ 0.8 × it.
Exit code 1 if missed.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import aiohttp
import asyncpg
from aiohttp import web

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.db import create_pool  # noqa: E402
from core.migrate import migrate  # noqa: E402
from crm.ratelimit import RateLimiter  # noqa: E402
from crm.transport import send  # noqa: E402
from tests.dbsetup import fresh_database  # noqa: E402
from tests.fakes.amocrm import window_max  # noqa: E402

MIN_RATIO = 0.8


# --- a worker process ---------------------------------------------------------------------------
async def worker(dsn: str, url: str, key: str, rate: float, concurrency: int, until: float) -> None:
    pool = await create_pool(dsn, max_size=1)  # a reservation is one short statement
    limiter = RateLimiter(pool, key, rate)
    async with aiohttp.ClientSession() as http:

        async def loop() -> None:
            while time.time() < until:
                await send(http, "bench", "GET", url, limiter=limiter, timeout_seconds=10)

        await asyncio.gather(*(loop() for _ in range(concurrency)))
    await pool.close()


# --- the fake CRM and the runs ------------------------------------------------------------------
class FakeCRM:
    def __init__(self) -> None:
        self.times: list[float] = []
        self.app = web.Application()
        self.app.router.add_get("/api/v4/leads/{id}", self.lead)
        self.runner = web.AppRunner(self.app, access_log=None)
        self.url = ""

    async def lead(self, request: web.Request) -> web.Response:
        self.times.append(time.monotonic())
        return web.json_response({"id": int(request.match_info["id"]), "custom_fields_values": None})

    async def start(self) -> None:
        await self.runner.setup()
        site = web.TCPSite(self.runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]


def figures(times: list[float], rate: float) -> tuple[int, int, int, float]:
    """(requests, most in a sliding second, most in a calendar second, throughput / limit)."""
    times = sorted(times)
    calendar = Counter(math.floor(t - times[0]) for t in times)
    throughput = (len(times) - 1) / (times[-1] - times[0]) if len(times) > 1 else 0.0
    return len(times), window_max(times), max(calendar.values()), throughput / rate


async def run(fake: FakeCRM, dsn: str, name: str, rate: float, shared: bool, args: argparse.Namespace,
              seconds: float) -> tuple[int, int, int, float]:
    fake.times.clear()
    until = time.time() + seconds
    procs = [
        await asyncio.create_subprocess_exec(
            sys.executable, __file__, "--worker", dsn, f"{fake.url}/api/v4/leads/1",
            f"{name}:shared" if shared else f"{name}:process-{i}", str(rate), str(args.concurrency), str(until),
        )
        for i in range(args.processes)
    ]
    codes = [await p.wait() for p in procs]
    if any(codes):
        raise SystemExit(f"a worker failed: exit codes {codes}")
    return figures(fake.times, rate)


async def main(args: argparse.Namespace) -> int:
    fake = FakeCRM()
    await fake.start()
    ok = True
    async with fresh_database(Path(tempfile.mkdtemp())) as dsn:
        conn = await asyncpg.connect(dsn)
        await migrate(conn)
        await conn.close()
        print(f"crm_ratelimit: {args.processes} worker processes × {args.concurrency} request loops, "
              f"fake CRM at {fake.url}, {args.seconds:g} s per shared run")
        print(f"{'run':<34} {'limit/s':>7} {'requests':>8} {'max in 1 s':>10} {'max per calendar s':>18} "
              f"{'throughput/limit':>16}")
        runs = [("amocrm", 7.0, True, args.seconds), ("bitrix24", 2.0, True, args.seconds),
                ("amocrm", 7.0, False, min(args.seconds, 8.0))]
        for name, rate, shared, seconds in runs:
            n, sliding, calendar, ratio = await run(fake, dsn, name, rate, shared, args, seconds)
            label = f"{name}, {'one shared bucket' if shared else 'baseline: a bucket per process'}"
            print(f"{label:<34} {rate:>7g} {n:>8} {sliding:>10} {calendar:>18} {ratio:>16.3f}")
            if shared and not (sliding <= rate and calendar <= rate and ratio >= MIN_RATIO):
                ok = False
    await fake.runner.cleanup()
    print(f"targets (shared runs): max per second ≤ the limit, throughput ≥ {MIN_RATIO} × the limit: "
          f"{'met' if ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        dsn, url, key, rate, concurrency, until = sys.argv[2:8]
        asyncio.run(worker(dsn, url, key, float(rate), int(concurrency), float(until)))
        sys.exit(0)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--processes", type=int, default=4)
    parser.add_argument("--concurrency", type=int, default=4, help="request loops per process")
    parser.add_argument("--seconds", type=float, default=20.0, help="length of each shared run")
    sys.exit(asyncio.run(main(parser.parse_args())))
