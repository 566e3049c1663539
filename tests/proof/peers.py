"""The fake peers of the proof scenarios, started in the test's own event loop.

- `ProofGraph`: the fake Graph API (tests.fakes.graph) plus what the scenarios need to provoke and
  measure: arrival/answer times per request, an outage switch (503 / hang past our timeout /
  both alternating: nothing accepted), "accept, then hang" (Meta took the events but our client
  times out) and "hold the next accepted request" (so a crash can land between Meta's 200 and
  our commit, deterministically).
- `ProofLLM`: a responder for tests.fakes.llm.FakeLLM whose analysis is deterministic: a client
  message containing `#qualified` proves level 2, one containing `#booked` level 3, and the
  verdict cites the ids of those messages as they appear in the transcript (one JSON object per
  line `{"id", "role", "text"}`), so the real evidence checks accept it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from qualibot.demo_peers import transcript_messages
from tests.fakes.evolution import FakeEvolution
from tests.fakes.graph import FakeGraph
from tests.fakes.llm import FakeLLM

QUALIFIED_MARK = "#qualified"
BOOKED_MARK = "#booked"
LLM_KEY = "sk-proof-llm-key-5f1c0a9e7d3b"  # searched for in the service logs


class ProofGraph(FakeGraph):
    def __init__(self) -> None:
        super().__init__()
        self.outage: str | None = None  # None | "503" | "timeout" | "mixed"
        self.hang_seconds = 2.0  # longer than the service's META timeout in every scenario
        self.outage_times: list[float] = []  # arrival time of every request refused by the outage
        self.accept_then_hang = 0  # the next N accepted requests are answered too late
        self.unanswered: list[str] = []  # event ids Meta accepted while the client had given up
        self.hold_next = False
        self.held = asyncio.Event()
        self.release = asyncio.Event()
        self.held_ids: list[str] = []
        self._outage_seq = itertools.count()

    async def _events(self, request: web.Request) -> web.StreamResponse:
        arrived = time.monotonic()
        if self.outage:
            self.outage_times.append(arrived)
            mode = self.outage
            if mode == "mixed":
                mode = "503" if next(self._outage_seq) % 2 == 0 else "timeout"
            if mode == "503":
                return web.Response(status=503, text="Service Unavailable")
            await asyncio.sleep(self.hang_seconds)
            return web.Response(status=504, text="Gateway Timeout")
        index = len(self.requests)  # FakeGraph appends this request's record before its first await
        response = await super()._events(request)
        record = self.requests[index]
        record["arrived"] = arrived
        record["answered"] = time.monotonic()
        if record.get("status") != 200:
            return response
        ids = [str(e.get("event_id")) for e in record.get("events", [])]
        if self.hold_next:
            self.hold_next = False
            self.held_ids = ids
            self.held.set()
            await self.release.wait()  # the test kills the service meanwhile
        elif self.accept_then_hang > 0:
            self.accept_then_hang -= 1
            self.unanswered.extend(ids)
            await asyncio.sleep(self.hang_seconds)
        return response

    # --- what the scenarios read -------------------------------------------------------------
    def accepted(self) -> list[dict[str, Any]]:
        """Requests Meta accepted (200), with their events."""
        return [r for r in self.requests if r.get("status") == 200]

    def by_event_id(self) -> Counter[str]:
        return Counter(str(e.get("event_id")) for r in self.accepted() for e in r.get("events", []))

    def by_dialog_level(self) -> Counter[tuple[str, str]]:
        """Accepted events counted by (click id, event name): the (dialog, level) as Meta sees it."""
        return Counter(
            (str((e.get("user_data") or {}).get("ctwa_clid")), str(e.get("event_name")))
            for r in self.accepted() for e in r.get("events", [])
        )

    def in_flight(self, killed: tuple[float, float], margin: float) -> list[dict[str, Any]]:
        """Accepted requests that arrived before the process was dead (`killed` = when the
        SIGKILL was sent, when the process was reaped) and were answered at most `margin`
        seconds before the signal: the dead process may not have committed their outcome."""
        sent, dead = killed
        return [r for r in self.accepted()
                if r.get("arrived", dead) <= dead and r.get("answered", 0.0) >= sent - margin]

    def ids_in_flight(self, killed: tuple[float, float], margin: float) -> set[str]:
        return {str(e.get("event_id")) for r in self.in_flight(killed, margin) for e in r.get("events", [])}

    def first_deliveries(self) -> dict[str, int]:
        """event id -> index (in `requests`) of the request that delivered it first."""
        first: dict[str, int] = {}
        for n, r in enumerate(self.requests):
            if r.get("status") == 200:
                for e in r.get("events", []):
                    first.setdefault(str(e.get("event_id")), n)
        return first


@dataclass
class ProofLLM:
    """The responder: counts analyses and replies."""

    analyses: int = 0
    replies: int = 0

    def __call__(self, body: dict[str, Any]) -> str:
        if body.get("response_format"):
            self.analyses += 1
            return self.analysis(body)
        self.replies += 1
        return "Thank you! Which day suits you for a consultation?"

    @staticmethod
    def analysis(body: dict[str, Any]) -> str:
        client = [m for m in transcript_messages(body) if m.get("role") == "client"]
        qualified = [m["id"] for m in client if QUALIFIED_MARK in str(m.get("text"))]
        booked = [m["id"] for m in client if BOOKED_MARK in str(m.get("text"))]
        return json.dumps({
            "is_interested": bool(client), "is_qualified": bool(qualified or booked),
            "is_scheduled": bool(booked), "evidence_message_ids": sorted(set(qualified + booked)),
            "reasoning": "proof responder: marked client messages",
        })


@dataclass
class Peers:
    graph: ProofGraph
    evolution: FakeEvolution
    llm: FakeLLM
    responder: ProofLLM


@asynccontextmanager
async def running_peers() -> AsyncIterator[Peers]:
    responder = ProofLLM()
    graph, evolution, llm = ProofGraph(), FakeEvolution(), FakeLLM(responder)
    for fake in (graph, evolution, llm):
        await fake.start()
    try:
        yield Peers(graph, evolution, llm, responder)
    finally:
        graph.release.set()
        for fake in (graph, evolution, llm):
            await fake.stop()
