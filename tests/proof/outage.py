"""Scenario 2, Meta outage: the fake Graph API answers 503 or hangs past our timeout (nothing
accepted) for `outage_seconds`, then recovers.

Phase A, the outage: dialogs reach their levels while Meta is down; their events wait in the
outbox. The sender's backoff (QUALIBOT_CAPI_RETRY_BASE/MAX_SECONDS, per event, doubling) bounds the
requests made during the outage; the scenario counts them and compares them with the bound the
backoff schedule allows. After recovery every event is delivered exactly once.

Phase B, Meta times out after accepting: the first request after the outage is accepted (Meta
counts its events) but answered after our timeout. The sender cannot know: it retries with the
same event_id and Meta counts those events twice. That is the documented at-least-once window;
the scenario measures it (every event of that request twice, every other event once).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from tests.proof.checks import Report, check_events, check_logs, check_messages, wait_settled
from tests.proof.database import scenario_database
from tests.proof.peers import LLM_KEY, running_peers
from tests.proof.service import DEFAULTS, ServiceProcess, service_env
from tests.proof.traffic import DialogPlan, Poster, interleaved, plan_dialogs


@dataclass
class OutageParams:
    dialogs: int = 24
    per_dialog: int = 4
    outage_seconds: float = 8.0
    mode: str = "mixed"  # 503 | timeout | mixed (alternating)
    late_dialogs: int = 6  # phase B
    settle_timeout: float = 60.0


def attempts_bound(seconds: float, base: float, cap: float, jitter: float = 0.9) -> int:
    """Most attempts one event can make in `seconds` under the sender's backoff (first try at 0,
    then base·2^(n-1) capped at `cap`, each shortened by at most the jitter)."""
    attempts, t = 1, 0.0
    while True:
        t += jitter * min(base * 2 ** (attempts - 1), cap)
        if t > seconds:
            return attempts
        attempts += 1


async def _recorded(pool: asyncpg.Pool, plans: list[DialogPlan]) -> bool:
    count = await pool.fetchval("SELECT count(*) FROM capi_events_log")
    return bool(count >= sum(p.target for p in plans))


async def run_outage(params: OutageParams, workdir: Path) -> Report:
    report = Report(f"Meta outage ({params.mode}, {params.outage_seconds:g} s, {params.dialogs} dialogs)")
    plans = plan_dialogs(params.dialogs, params.per_dialog, tag="A")
    late = plan_dialogs(params.late_dialogs, params.per_dialog, tag="B", first=params.dialogs)
    base = float(DEFAULTS["QUALIBOT_CAPI_RETRY_BASE_SECONDS"])
    cap = float(DEFAULTS["QUALIBOT_CAPI_RETRY_MAX_SECONDS"])
    async with running_peers() as peers, scenario_database(workdir, peers.evolution.url) as (dsn, pool):
        graph = peers.graph
        env = service_env(database_url=dsn, data_dir=workdir / "data", llm_url=peers.llm.base_url,
                          llm_key=LLM_KEY, graph_url=graph.url)
        service = ServiceProcess("outage-serve", ["serve"], env, workdir)
        await service.start()
        poster = Poster([service.url])
        try:
            graph.outage = params.mode
            down = time.monotonic()
            await poster.play(interleaved(plans))
            while not await _recorded(pool, plans):  # noqa: ASYNC110  # polling the database
                await asyncio.sleep(0.1)
            report.figures["all events recorded after (s)"] = round(time.monotonic() - down, 1)
            await asyncio.sleep(max(0.0, down + params.outage_seconds - time.monotonic()))
            graph.outage = None
            duration = time.monotonic() - down
            during = len(graph.outage_times)
            recovered = time.monotonic()
            await wait_settled(pool, plans, params.settle_timeout)
            events = sum(p.target for p in plans)
            bound = events * attempts_bound(duration, base, cap)
            report.figures.update({
                "outage seconds": round(duration, 1),
                "events waiting during the outage": events,
                "Graph requests during the outage": during,
                "requests per event during the outage": round(during / events, 2),
                "bound from the backoff schedule (events × attempts)": bound,
                "a retry on every worker poll would have made about": int(
                    events * duration / float(DEFAULTS["QUALIBOT_WORKER_POLL_SECONDS"])),
                "all delivered after recovery (s)": round(time.monotonic() - recovered, 1),
            })
            report.check(during <= bound, f"{during} Graph requests during the outage exceed the backoff bound {bound}")
            report.check(during >= events // 10, "the outage saw almost no requests: was it provoked at all?")
            once = Counter(graph.by_event_id())
            report.check(all(n == 1 for n in once.values()) and len(once) == events,
                         "after the outage, not every event was delivered exactly once")

            graph.accept_then_hang = 1  # phase B
            await poster.play(interleaved(late))
            await wait_settled(pool, plans + late, params.settle_timeout)
        finally:
            await service.stop()
            await poster.close()
        report.figures["phase B: events Meta accepted but answered after our timeout"] = len(graph.unanswered)
        await check_messages(report, pool, plans + late, poster)
        await check_events(report, pool, plans + late, graph, window=Counter(graph.unanswered),
                           expected_twice=graph.unanswered)
        report.check(bool(graph.unanswered), "phase B provoked no late acceptance")
        check_logs(report, service.logs, [p.phone for p in plans + late])
    return report.finish()
