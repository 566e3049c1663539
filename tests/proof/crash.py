"""Scenario 1, crash: `qualibot serve` is SIGKILLed midway through a stream of dialogs, restarted, and
the stream finishes.

Kill modes:
- `graph`: the kill lands while Meta (the fake) holds a request it has already accepted: the
  documented at-least-once window (death between Meta's 200 and our commit), provoked on purpose.
  Those events must be resent with the same event_id after the lease, so Meta counts them twice;
  the scenario measures how many.
- `random`: the kill lands when the acknowledged-message threshold is reached, wherever the
  process happens to be. Any duplicate must come from a request that was in flight (or answered
  within a second) at the kill.
Messages whose webhook got no answer (the process was dead) are retried, as Evolution does.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from tests.proof.checks import Report, check_events, check_logs, check_messages, dump_graph, wait_settled
from tests.proof.database import scenario_database
from tests.proof.peers import LLM_KEY, ProofGraph, running_peers
from tests.proof.service import ServiceProcess, service_env
from tests.proof.traffic import Poster, interleaved, plan_dialogs

WINDOW_MARGIN = 1.0  # seconds: an answer received this shortly before the kill may be uncommitted


@dataclass
class CrashParams:
    dialogs: int = 30
    per_dialog: int = 10
    kills: tuple[str, ...] = ("graph", "random")  # one SIGKILL per entry, evenly spread; its mode
    rate: float | None = 30.0  # messages per second; None: as fast as possible
    settle_timeout: float = 90.0
    hold_timeout: float = 30.0  # graph mode: wait this long for an accepted Graph request
    min_uptime: float = 1.5  # a restarted process runs at least this long before the next kill


@dataclass
class Kill:
    mode: str
    acked: int  # messages acknowledged when the process was killed
    held: list[str]  # graph mode: the event ids of the request Meta held
    killed: tuple[float, float]  # monotonic: SIGKILL sent, process reaped
    restart_seconds: float

    def figures(self, graph: ProofGraph, duplicates: set[str]) -> dict[str, object]:
        return {"mode": self.mode, "acked before kill": self.acked, "events in the held request": len(self.held),
                "restart seconds": self.restart_seconds,
                "resent after this kill": _resent(graph, self.killed, duplicates)}


async def run_crash(params: CrashParams, workdir: Path) -> Report:
    report = Report(f"crash ({params.dialogs * params.per_dialog} messages / {params.dialogs} dialogs, "
                    f"SIGKILL: {', '.join(params.kills)})")
    plans = plan_dialogs(params.dialogs, params.per_dialog)
    total = params.dialogs * params.per_dialog
    async with running_peers() as peers, scenario_database(workdir, peers.evolution.url) as (dsn, pool):
        peers.graph.latency = 0.02
        env = service_env(database_url=dsn, data_dir=workdir / "data", llm_url=peers.llm.base_url,
                          llm_key=LLM_KEY, graph_url=peers.graph.url)
        service = ServiceProcess("crash-serve", ["serve"], env, workdir)
        await service.start()
        poster = Poster([service.url], concurrency=8)
        playing = asyncio.create_task(poster.play(interleaved(plans), rate=params.rate))
        kills: list[Kill] = []
        try:
            for k, mode in enumerate(params.kills):
                await poster.until_acked(total * (k + 1) // (len(params.kills) + 2))
                if kills:  # let the restarted process work a little before the next kill
                    up = time.monotonic() - kills[-1].killed[1] - kills[-1].restart_seconds
                    await asyncio.sleep(max(0.0, params.min_uptime - up))
                kills.append(await _kill_and_restart(service, peers.graph, mode, poster, params))
            await playing
            report.figures["settle seconds after the last message"] = await wait_settled(
                pool, plans, params.settle_timeout)
        finally:
            playing.cancel()
            exit_code = await service.stop()
            await poster.close()
        window: Counter[str] = Counter()  # event id -> kills it was in flight at
        for kill in kills:
            window.update(peers.graph.ids_in_flight(kill.killed, WINDOW_MARGIN))
        duplicates = {i for i, n in peers.graph.by_event_id().items() if n > 1}
        report.figures["kills"] = [kill.figures(peers.graph, duplicates) for kill in kills]
        await check_messages(report, pool, plans, poster)
        held = {i for kill in kills for i in kill.held}
        await check_events(report, pool, plans, peers.graph, window=window, expected_twice=held)
        report.figures["events in flight at a kill (the at-least-once window)"] = len(window)
        report.figures["LLM analyses / replies"] = f"{peers.responder.analyses} / {peers.responder.replies}"
        report.figures["exit code after SIGTERM"] = exit_code
        report.check(exit_code == 0, f"the restarted service exited with {exit_code} on SIGTERM")
        check_logs(report, service.logs, [p.phone for p in plans])
        dump_graph(peers.graph, workdir / "graph-requests.jsonl")
        (workdir / "kills.json").write_text(json.dumps([kill.killed for kill in kills]))
    return report.finish()


async def _kill_and_restart(
    service: ServiceProcess, graph: ProofGraph, mode: str, poster: Poster, params: CrashParams
) -> Kill:
    held = await _arm(graph, params) if mode == "graph" else None
    acked = poster.acked
    signalled = time.monotonic()
    await service.kill()
    killed = (signalled, time.monotonic())
    graph.release.set()
    await service.start()
    return Kill(mode, acked, held or [], killed, round(time.monotonic() - killed[1], 1))


def _resent(graph: ProofGraph, killed: tuple[float, float], duplicates: set[str]) -> list[str]:
    """Requests in flight at the kill that first delivered events Meta then got again: how many
    events, and when Meta had answered relative to the signal (negative: before it)."""
    first = graph.first_deliveries()
    found = []
    for r in graph.in_flight(killed, WINDOW_MARGIN):
        index = graph.requests.index(r)
        n = sum(1 for e in r.get("events", []) if str(e.get("event_id")) in duplicates
                and first[str(e.get("event_id"))] == index)
        if n:
            found.append(f"{n} events answered {round((r['answered'] - killed[0]) * 1000)} ms from the SIGKILL")
    return found


async def _arm(graph: ProofGraph, params: CrashParams) -> list[str] | None:
    """Hold the next request Meta accepts; returns its event ids once it is held (None: none came)."""
    graph.held, graph.release = asyncio.Event(), asyncio.Event()
    graph.hold_next = True
    try:
        await asyncio.wait_for(graph.held.wait(), params.hold_timeout)
    except TimeoutError:
        graph.hold_next = False
        return None
    return list(graph.held_ids)
