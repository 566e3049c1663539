"""Scenario 4, database down: the service's PostgreSQL (a private server, tests.proof.database) is
stopped under load and started again after `down_seconds`.

While it is down, webhooks must answer 503 (Evolution retries them), never 200: there is nothing
to commit to, and a 200 would be a promise we cannot keep. `/healthz` answers 503. When it
returns, the service recovers by itself: no restart, the pools reconnect, the workers pick up.
Every message answered 200 is stored once; messages answered 503 are retried, as Evolution does,
and end up stored once too. Events are delivered once, except those whose success could not be
committed because the database vanished right after Meta's 200 (the at-least-once window).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import aiohttp

from core.db import create_pool
from tests.proof.checks import Report, check_events, check_logs, check_messages, wait_settled
from tests.proof.database import prepare, private_postgres
from tests.proof.peers import LLM_KEY, running_peers
from tests.proof.service import ServiceProcess, service_env
from tests.proof.traffic import Poster, interleaved, plan_dialogs

WINDOW_MARGIN = 1.0


@dataclass
class DbDownParams:
    dialogs: int = 30
    per_dialog: int = 8
    rate: float | None = 40.0
    down_seconds: float = 3.0
    stop_mode: str = "fast"  # fast | immediate (a crash of PostgreSQL)
    settle_timeout: float = 60.0


async def _health(http: aiohttp.ClientSession, url: str) -> int | str:
    """The status; a 503 whose body is more than the fixed word (an exception's name or text) is reported as such."""
    try:
        async with http.get(f"{url}/healthz") as resp:
            if resp.status == 503 and await resp.json() != {"status": "unavailable"}:
                return f"503 naming internals: {(await resp.text())[:100]}"
            return resp.status
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return "no answer"


async def run_dbdown(params: DbDownParams, workdir: Path) -> Report:
    report = Report(f"database down ({params.stop_mode} stop, {params.down_seconds:g} s, "
                    f"{params.dialogs * params.per_dialog} messages / {params.dialogs} dialogs)")
    plans = plan_dialogs(params.dialogs, params.per_dialog)
    total = params.dialogs * params.per_dialog
    async with running_peers() as peers, private_postgres() as (server, dsn):
        setup_pool = await prepare(dsn, peers.evolution.url)
        await setup_pool.close()
        env = service_env(database_url=dsn, data_dir=workdir / "data", llm_url=peers.llm.base_url,
                          llm_key=LLM_KEY, graph_url=peers.graph.url)
        service = ServiceProcess("dbdown-serve", ["serve"], env, workdir)
        await service.start()
        poster = Poster([service.url])
        playing = asyncio.create_task(poster.play(interleaved(plans), rate=params.rate))
        http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5))
        try:
            await poster.until_acked(total // 3)
            stopping = time.monotonic()
            await server.stop(params.stop_mode)
            down = time.monotonic()
            health_down = Counter([await _health(http, service.url)])
            await asyncio.sleep(max(0.0, down + params.down_seconds - time.monotonic()))
            health_down[await _health(http, service.url)] += 1
            restarting = time.monotonic()
            await server.start()
            up = time.monotonic()
            while await _health(http, service.url) != 200:  # noqa: ASYNC110  # polling another process
                await asyncio.sleep(0.05)
            healthy = time.monotonic()
            await playing
            pool = await create_pool(dsn, max_size=4)
            try:
                settle = await wait_settled(pool, plans, params.settle_timeout)
                lied = [s for t, s in poster.timeline if down < t < restarting and s == 200]
                during = Counter(s for t, s in poster.timeline if down < t < restarting)
                first_ok = min((t for t, s in poster.timeline if t > up and s == 200), default=None)
                report.figures.update({
                    "webhook answers while the database was down": dict(during),
                    "200 answers while the database was down": len(lied),
                    "/healthz while down": dict(health_down),
                    "database down (s)": round(restarting - stopping, 1),
                    "first 200 after the database returned (s)": round(first_ok - up, 2) if first_ok else None,
                    "/healthz 200 again after (s)": round(healthy - up, 2),
                    "settle seconds after the last message": settle,
                })
                report.check(not lied, f"{len(lied)} webhooks answered 200 while the database was down")
                report.check(during.get(503, 0) > 0, "no webhook was answered 503 while the database was down")
                report.check(set(health_down) == {503}, f"/healthz while down answered {dict(health_down)}")
                await check_messages(report, pool, plans, poster)
                window = peers.graph.ids_in_flight((stopping, up), WINDOW_MARGIN)
                report.figures["events answered by Meta around the outage (may be resent)"] = len(window)
                await check_events(report, pool, plans, peers.graph, window=Counter(window))
            finally:
                await pool.close()
        finally:
            playing.cancel()
            await http.close()
            await service.stop()
            await poster.close()
        errors = sum(log.read_text().count('"level": "error"') for log in service.logs)
        report.figures["error-level log lines"] = errors
        check_logs(report, service.logs, [p.phone for p in plans])
    return report.finish()
