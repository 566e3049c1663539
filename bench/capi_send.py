"""CAPI delivery throughput: the outbox (durable, every outcome recorded) against the official SDK.

Usage: .venv/bin/python bench/capi_send.py [--events 20000] [--sdk-sample 2000] [--latency 0.15]

Everything talks to the same fake Graph API (tests/fakes/graph.py), run in its own process so
that the SDK's blocking client and our event loop do not share a CPU with it. In one run:

1. outbox: N dialogs (one lead with a click id each) in a fresh database; timed from the moment
   their level-1 events are to be recorded: each event built and hashed (`capi.payload`), stored
   as a pending capi_events_log row (in transactions of one batch, each waking the sender), and
   delivered by the real sender loop in a core.jobs Worker, until no row is pending; then checks
   every row is `success`, every dialog flagged, and the fake received each event id once;
2. SDK one by one: `EventRequest(events=[e]).execute()`, sequentially, on a sample of
   --sdk-sample events (the rate is extrapolated; at ~1 ms per request all N would take long);
3. SDK BatchProcessor: `process_events` (50 events per request, its default) over all N events;
4. raw batches, the like-for-like baseline (issue 18.5): the same events built and hashed the same
   way, in batches of the outbox's size, posted through the same HTTP client (`capi.graph`) with as
   many requests in flight as the outbox's lanes, nothing recorded anywhere; for reference, hand-made
   batches of 1000 through the SDK's `EventRequest`, one after another;
5. the outbox and the raw batches again with --latency seconds added to every answer of the fake.

Prints events/s for each and the ratios against the targets of issue 3.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from capi.graph import GraphClient  # noqa: E402
from capi.jobs import register_jobs, schedule_send  # noqa: E402
from capi.payload import EventFacts, audit_request, build_event  # noqa: E402
from capi.record import event_id_for  # noqa: E402
from core.context import AppContext  # noqa: E402
from core.db import create_pool  # noqa: E402
from core.jobs import JobRegistry, Worker  # noqa: E402
from core.logging import configure_logging  # noqa: E402
from core.migrate import installation_id, migrate  # noqa: E402
from core.settings import Settings  # noqa: E402
from qualification.dialogs import mark_sent  # noqa: E402
from tests.dbsetup import fresh_database  # noqa: E402
from tests.seed import META_TOKEN, PIXEL_ID, WABA_ID, seed  # noqa: E402

TARGETS = {"sdk_one": 10.0, "sdk_batch": 3.0, "raw": 0.5, "latency_rate": 5000.0}


# --- the fake, in its own process ---------------------------------------------------------------
class FakeProcess:
    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.graph", "--port", "0"], cwd=ROOT, stdout=subprocess.PIPE, text=True,
        )
        assert self.proc.stdout is not None
        self.url = self.proc.stdout.readline().strip()
        if not self.url.startswith("http"):
            raise RuntimeError("the fake Graph API did not start")

    async def call(self, http: aiohttp.ClientSession, path: str, body: dict[str, Any] | None = None) -> Any:
        method = "GET" if path == "stats" else "POST"
        async with http.request(method, f"{self.url}/__fake__/{path}", json=body or {}) as resp:
            return await resp.json()

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


# --- database rows ------------------------------------------------------------------------------
@dataclass(frozen=True)
class Fact:
    dialog_id: int
    phone: str
    ctwa_clid: str


async def prepare_dialogs(pool: asyncpg.Pool, n: int) -> list[Fact]:
    """N leads with click ids and their dialogs; no event yet (building them is timed)."""
    async with pool.acquire() as conn:
        await conn.execute("TRUNCATE capi_events_log, jobs, dialog_analysis, leads RESTART IDENTITY CASCADE")
        await conn.execute(
            """INSERT INTO leads (account_id, instance_name, phone, direction_id, ctwa_clid)
               SELECT 'clinic', 'clinic-main', (79000000000 + g)::text, 'implants', 'ARAkLk-' || g
               FROM generate_series(1, $1) g""", n)
        await conn.execute(
            """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id)
               SELECT account_id, instance_name, phone, id, direction_id FROM leads ORDER BY id""")
        dialogs = await conn.fetch(
            "SELECT da.id, da.contact_phone, l.ctwa_clid FROM dialog_analysis da JOIN leads l ON l.id = da.lead_id"
            " ORDER BY da.id")
        await conn.execute("VACUUM ANALYZE capi_events_log")
        await conn.execute("VACUUM ANALYZE dialog_analysis")
    return [Fact(d["id"], d["contact_phone"], d["ctwa_clid"]) for d in dialogs]


def build(installation: uuid.UUID, fact: Fact, at: datetime) -> dict[str, Any]:
    """One level-1 event as `capi.record` builds it: event id, phone normalised and hashed."""
    return build_event(EventFacts(
        event_name="LeadSubmitted", event_time=at, level=1, ctwa_clid=fact.ctwa_clid,
        event_id=event_id_for(installation, dialog_id=fact.dialog_id, direction_id=None, crm_entity=None, level=1),
        whatsapp_business_account_id=WABA_ID, phone=fact.phone))


_RECORD_SQL = """
INSERT INTO capi_events_log (direction_id, dialog_analysis_id, contact_phone, pixel_id, event_name,
    event_level, event_id, event_time, source, status, request)
SELECT 'implants', t.id, t.phone, $4, 'LeadSubmitted', 1, t.event_id, $5, 'whatsapp', 'pending', t.request::jsonb
FROM unnest($1::bigint[], $2::text[], $3::text[], $6::text[]) AS t(id, phone, request, event_id)"""


async def record(pool: asyncpg.Pool, installation: uuid.UUID, facts: list[Fact], chunk: int) -> None:
    """Build, hash and store the events as pending rows, `chunk` per transaction, each waking the sender.
    (`capi.record` writes one per decision, in the qualification's transaction: set-based here, so
    what is measured is the payloads and the outbox, not N small transactions.)"""
    at = datetime.now(UTC) - timedelta(minutes=5)
    for i in range(0, len(facts), chunk):
        part = facts[i:i + chunk]
        events = [build(installation, f, at) for f in part]
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute(_RECORD_SQL, [f.dialog_id for f in part], [f.phone for f in part],
                               [json.dumps(audit_request(e, None)) for e in events], PIXEL_ID, at,
                               [e["event_id"] for e in events])
            await schedule_send(conn)
        await asyncio.sleep(0)  # as decisions come from many transactions, the sender may start meanwhile


async def run_outbox(pool: asyncpg.Pool, settings: Settings, facts: list[Fact]) -> float:
    """Seconds from the first event's build until no row is pending, with a real job worker."""
    registry: JobRegistry[AppContext] = JobRegistry()
    register_jobs(registry, delivered=mark_sent)
    async with pool.acquire() as conn:
        installation = await installation_id(conn)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=settings, pool=pool, http=http, llm=None)
        worker = Worker(pool, registry, ctx, concurrency=2, poll_seconds=0.01, lease_seconds=60)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.5)  # the worker is up and idle, LISTENing
        started = time.perf_counter()
        await record(pool, installation, facts, settings.capi_batch_size)
        # the worker runs the sender on its own: the database is the one signal of "all delivered"
        while await pool.fetchval(  # noqa: ASYNC110
            "SELECT EXISTS (SELECT 1 FROM capi_events_log WHERE status = 'pending')"
        ):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await worker.stop(5)
        await asyncio.gather(task, return_exceptions=True)
    n = len(facts)
    done = await pool.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'")
    flagged = await pool.fetchval("SELECT count(*) FROM dialog_analysis WHERE capi_interest_sent")
    if done != n or flagged != n:
        raise RuntimeError(f"outbox: {done} rows success and {flagged} dialogs flagged of {n}")
    return elapsed


async def raw_batches(settings: Settings, installation: uuid.UUID, facts: list[Fact]) -> float:
    """The like-for-like baseline: the same events built and hashed, in batches of the outbox's size,
    posted through `capi.graph` (the outbox's HTTP client) with as many requests in flight as the
    outbox has lanes; nothing recorded."""
    lanes = asyncio.Semaphore(settings.capi_concurrency)
    size = settings.capi_batch_size

    async def post(graph: GraphClient, events: list[str]) -> None:
        async with lanes:
            answer = await graph.send(PIXEL_ID, META_TOKEN, events, None)
        if answer.kind != "success" or answer.events_received != len(events):
            raise RuntimeError(f"raw batch: {answer.response}")

    async with aiohttp.ClientSession() as http:
        graph = GraphClient(http, settings)
        started = time.perf_counter()
        at = datetime.now(UTC) - timedelta(minutes=5)
        posts = []
        for i in range(0, len(facts), size):
            events = [json.dumps(build(installation, f, at)) for f in facts[i:i + size]]
            posts.append(asyncio.create_task(post(graph, events)))
            await asyncio.sleep(0)  # let the posts already made go out while the next batch is built
        await asyncio.gather(*posts)
        return time.perf_counter() - started


# --- the SDK ------------------------------------------------------------------------------------
def sdk_events(n: int, offset: int) -> list[Any]:
    from facebook_business.adobjects.serverside.action_source import ActionSource
    from facebook_business.adobjects.serverside.custom_data import CustomData
    from facebook_business.adobjects.serverside.event import Event
    from facebook_business.adobjects.serverside.messaging_channel import MessagingChannel
    from facebook_business.adobjects.serverside.user_data import UserData

    now = int(time.time()) - 300
    return [
        Event(event_name="LeadSubmitted", event_time=now, event_id=f"sdk-{offset + i}",
              action_source=ActionSource.BUSINESS_MESSAGING, messaging_channel=MessagingChannel.WHATSAPP,
              user_data=UserData(phone=str(79000000000 + i), ctwa_clid=f"ARAkLk-{i}"),
              custom_data=CustomData(custom_properties={"event_level": 1}))
        for i in range(n)
    ]


def sdk_init(url: str) -> None:
    from facebook_business.api import FacebookAdsApi
    from facebook_business.session import FacebookSession

    FacebookSession.GRAPH = url  # the SDK's only seam for the Graph host
    FacebookAdsApi.init(access_token=META_TOKEN)


def sdk_one_by_one(n: int) -> float:
    from facebook_business.adobjects.serverside.event_request import EventRequest

    events = sdk_events(n, 0)
    started = time.perf_counter()
    for event in events:
        EventRequest(pixel_id=PIXEL_ID, events=[event]).execute()
    return time.perf_counter() - started


def sdk_batch_processor(n: int) -> float:
    from facebook_business.adobjects.serverside.batch_processor import BatchProcessor
    from facebook_business.adobjects.serverside.event_request_async import EventRequestAsync

    events = sdk_events(n, 10**6)
    started = time.perf_counter()
    BatchProcessor().process_events(EventRequestAsync(pixel_id=PIXEL_ID, events=[]), events)
    return time.perf_counter() - started


def sdk_hand_made_batches(n: int, size: int = 1000) -> float:
    from facebook_business.adobjects.serverside.event_request import EventRequest

    events = sdk_events(n, 2 * 10**6)
    started = time.perf_counter()
    for i in range(0, n, size):
        EventRequest(pixel_id=PIXEL_ID, events=events[i:i + size]).execute()
    return time.perf_counter() - started


# --- the run ------------------------------------------------------------------------------------
async def timed(label: str, n: int, run: Callable[[], Awaitable[float]], note: str = "") -> float:
    seconds = await run()
    rate = n / seconds
    print(f"  {label:<44} {n:>6} events in {seconds:7.2f} s = {rate:>9,.0f} ev/s {note}", flush=True)
    return rate


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--sdk-sample", type=int, default=2000, help="events sent one by one through the SDK")
    parser.add_argument("--latency", type=float, default=0.15)
    args = parser.parse_args()
    n = args.events
    log_file = Path(tempfile.gettempdir()) / "capi_send_bench.log"
    # the sender's logs are written (their cost counts), not shown; opened once, before anything runs
    with open(log_file, "w") as log_stream:  # noqa: ASYNC230
        configure_logging("info", stream=log_stream)
        return await _bench(args, n, log_file)


async def _bench(args: argparse.Namespace, n: int, log_file: Path) -> int:
    fake = FakeProcess()
    rates: dict[str, float] = {}
    try:
        async with aiohttp.ClientSession() as http, fresh_database(Path(tempfile.mkdtemp())) as dsn:
            conn = await asyncpg.connect(dsn)
            await migrate(conn)
            await conn.close()
            pool = await create_pool(dsn, max_size=12, min_size=8)  # a running server's pool is warm
            await seed(pool)
            settings = Settings(database_url=dsn, meta_graph_url=fake.url, meta_timeout_seconds=10)
            print(f"capi_send: {n} events, fake Graph API at {fake.url} (own process), "
                  f"sender concurrency {settings.capi_concurrency}, batch {settings.capi_batch_size}, "
                  f"{os.cpu_count()} CPUs; sender logs in {log_file}")

            async with pool.acquire() as conn:
                installation = await installation_id(conn)
            facts = await prepare_dialogs(pool, n)
            rates["outbox"] = await timed("outbox: build, hash, record, deliver", n,
                                          lambda: run_outbox(pool, settings, facts))
            stats = await fake.call(http, "stats")
            assert stats["unique"] == n and stats["duplicates"] == 0, stats

            sdk_init(fake.url)
            sample = min(args.sdk_sample, n)
            rates["sdk_one"] = await timed("SDK EventRequest one by one", sample,
                                           lambda: asyncio.to_thread(sdk_one_by_one, sample),
                                           f"(sample of {sample}, rate extrapolated to {n})")
            rates["sdk_batch"] = await timed("SDK BatchProcessor (50/request)", n,
                                             lambda: asyncio.to_thread(sdk_batch_processor, n))
            rates["sdk_hand"] = await timed("SDK hand-made batches of 1000, no bookkeeping", n,
                                            lambda: asyncio.to_thread(sdk_hand_made_batches, n), "(reference)")
            rates["raw"] = await timed("raw batches: build, hash, post (baseline)", n,
                                       lambda: raw_batches(settings, installation, facts))

            await fake.call(http, "reset")
            await fake.call(http, "config", {"latency": args.latency})
            facts = await prepare_dialogs(pool, n)
            ms = f"{args.latency * 1000:.0f} ms"
            rates["latency_rate"] = await timed(f"outbox with {ms} latency at the fake", n,
                                                lambda: run_outbox(pool, settings, facts))
            stats = await fake.call(http, "stats")
            assert stats["unique"] == n and stats["duplicates"] == 0, stats
            await fake.call(http, "reset")  # the raw batches send the same event ids
            rates["raw_latency"] = await timed(f"raw batches with {ms} latency", n,
                                               lambda: raw_batches(settings, installation, facts))
            await pool.close()
    finally:
        fake.stop()
    return report(rates)


def report(rates: dict[str, float]) -> int:
    outbox = rates["outbox"]
    checks = [
        ("outbox / SDK one by one", outbox / rates["sdk_one"], TARGETS["sdk_one"]),
        ("outbox / SDK BatchProcessor", outbox / rates["sdk_batch"], TARGETS["sdk_batch"]),
        ("outbox / raw batches (build + hash + post, like for like)", outbox / rates["raw"], TARGETS["raw"]),
    ]
    print("ratios:")
    ok = True
    for label, ratio, target in checks:
        good = ratio >= target
        ok &= good
        print(f"  {label:<58} {ratio:6.2f}x  (target >= {target:g}x) {'ok' if good else 'MISSED'}")
    print(f"  {'outbox / SDK hand-made batches (reference)':<58} {outbox / rates['sdk_hand']:6.2f}x")
    print(f"  {'outbox / raw batches, with latency':<58} {rates['latency_rate'] / rates['raw_latency']:6.2f}x")
    latency_ok = rates["latency_rate"] >= TARGETS["latency_rate"]
    ok &= latency_ok
    print(f"  {'outbox with latency, events/s':<58} {rates['latency_rate']:6,.0f}   "
          f"(target >= {TARGETS['latency_rate']:,.0f}) {'ok' if latency_ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
