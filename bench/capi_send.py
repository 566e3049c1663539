"""CAPI delivery throughput: the outbox (durable, every outcome recorded) against the official SDK.

Usage: .venv/bin/python bench/capi_send.py [--events 20000] [--sdk-sample 2000] [--latency 0.15]

Everything talks to the same fake Graph API (tests/fakes/graph.py), run in its own process so
that the SDK's blocking client and our event loop do not share a CPU with it. In one run:

1. outbox: N pending capi_events_log rows (built with capi.payload, one dialog and lead per
   event) in a fresh database, delivered by the real sender job through a core.jobs Worker;
   timed from the job's enqueue until no row is pending; checks every row is `success`, every
   dialog flagged, and the fake received each event id exactly once;
2. SDK one by one: `EventRequest(events=[e]).execute()`, sequentially, on a sample of
   --sdk-sample events (the rate is extrapolated; at ~1 ms per request all N would take long);
3. SDK BatchProcessor: `process_events` (50 events per request, its default) over all N events;
4. bookkeeping-free baseline: hand-made batches of 1000 through the SDK's `EventRequest`, posted one
   after another, nothing recorded anywhere (and, for reference, the same with raw aiohttp JSON);
5. the outbox again with --latency seconds added to every answer of the fake (a real network).

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
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

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

TARGETS = {"sdk_one": 10.0, "sdk_batch": 3.0, "baseline": 0.5, "latency_rate": 5000.0}


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
async def prepare_rows(pool: asyncpg.Pool, n: int) -> None:
    """N leads with click ids, their dialogs, and one pending level-1 decision each."""
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
            "SELECT da.id, da.contact_phone, l.ctwa_clid FROM dialog_analysis da JOIN leads l ON l.id = da.lead_id")
        now = datetime.now(UTC) - timedelta(minutes=5)
        installation = await installation_id(conn)
        ids, events, phones = [], [], []
        for d in dialogs:
            event = build_event(EventFacts(
                event_name="LeadSubmitted", event_time=now, level=1, ctwa_clid=d["ctwa_clid"],
                event_id=event_id_for(installation, dialog_id=d["id"], direction_id=None, crm_entity=None,
                                      level=1),
                whatsapp_business_account_id=WABA_ID, phone=d["contact_phone"]))
            ids.append(d["id"])
            phones.append(d["contact_phone"])
            events.append(json.dumps(audit_request(event, None)))
        await conn.execute(
            """INSERT INTO capi_events_log (direction_id, dialog_analysis_id, contact_phone, pixel_id, event_name,
                   event_level, event_id, event_time, source, status, request)
               SELECT 'implants', t.id, t.phone, $4, 'LeadSubmitted', 1, (t.request::jsonb) #>> '{data,0,event_id}', $5,
                      'whatsapp', 'pending', t.request::jsonb
               FROM unnest($1::bigint[], $2::text[], $3::text[]) AS t(id, phone, request)""",
            ids, phones, events, PIXEL_ID, now)
        await conn.execute("VACUUM ANALYZE capi_events_log")
        await conn.execute("VACUUM ANALYZE dialog_analysis")


async def run_outbox(pool: asyncpg.Pool, settings: Settings, n: int) -> float:
    """Seconds from the sender's enqueue until no row is pending, with a real job worker."""
    registry: JobRegistry[AppContext] = JobRegistry()
    register_jobs(registry, delivered=mark_sent)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=settings, pool=pool, http=http, llm=None)
        worker = Worker(pool, registry, ctx, concurrency=2, poll_seconds=0.01, lease_seconds=60)
        task = asyncio.create_task(worker.run())
        started = time.perf_counter()
        await schedule_send(pool)
        # the worker runs the job on its own: the database is the one signal of "all delivered"
        while await pool.fetchval(  # noqa: ASYNC110
            "SELECT EXISTS (SELECT 1 FROM capi_events_log WHERE status = 'pending')"
        ):
            await asyncio.sleep(0.01)
        elapsed = time.perf_counter() - started
        await worker.stop(5)
        await asyncio.gather(task, return_exceptions=True)
    done = await pool.fetchval("SELECT count(*) FROM capi_events_log WHERE status = 'success'")
    flagged = await pool.fetchval("SELECT count(*) FROM dialog_analysis WHERE capi_interest_sent")
    if done != n or flagged != n:
        raise RuntimeError(f"outbox: {done} rows success and {flagged} dialogs flagged of {n}")
    return elapsed


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


async def raw_batches(url: str, n: int, size: int = 1000) -> float:
    """Hand-made JSON bodies of 1000 events with aiohttp, one request after another, nothing recorded."""
    now = int(time.time()) - 300
    events = [json.dumps(build_event(EventFacts(
        event_name="LeadSubmitted", event_time=datetime.fromtimestamp(now, UTC), event_id=f"raw-{i}", level=1,
        ctwa_clid=f"ARAkLk-{i}", phone=str(79000000000 + i)))) for i in range(n)]
    async with aiohttp.ClientSession() as http:
        started = time.perf_counter()
        for i in range(0, n, size):
            body = '{"data":[' + ",".join(events[i:i + size]) + f'],"access_token":"{META_TOKEN}"}}'
            async with http.post(f"{url}/v25.0/{PIXEL_ID}/events", data=body,
                                 headers={"Content-Type": "application/json"}) as resp:
                if resp.status != 200:
                    raise RuntimeError(await resp.text())
                await resp.read()
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

            await prepare_rows(pool, n)
            rates["outbox"] = await timed("outbox (durable, every outcome recorded)", n,
                                          lambda: run_outbox(pool, settings, n))
            stats = await fake.call(http, "stats")
            assert stats["unique"] == n and stats["duplicates"] == 0, stats

            sdk_init(fake.url)
            sample = min(args.sdk_sample, n)
            rates["sdk_one"] = await timed("SDK EventRequest one by one", sample,
                                           lambda: asyncio.to_thread(sdk_one_by_one, sample),
                                           f"(sample of {sample}, rate extrapolated to {n})")
            rates["sdk_batch"] = await timed("SDK BatchProcessor (50/request)", n,
                                             lambda: asyncio.to_thread(sdk_batch_processor, n))
            rates["baseline"] = await timed("SDK hand-made batches of 1000, no bookkeeping", n,
                                            lambda: asyncio.to_thread(sdk_hand_made_batches, n))
            rates["raw"] = await timed("raw aiohttp batches of 1000, no bookkeeping", n,
                                       lambda: raw_batches(fake.url, n), "(reference)")

            await fake.call(http, "reset")
            await fake.call(http, "config", {"latency": args.latency})
            await prepare_rows(pool, n)
            rates["latency_rate"] = await timed(f"outbox with {args.latency * 1000:.0f} ms latency at the fake", n,
                                                lambda: run_outbox(pool, settings, n))
            rates["raw_latency"] = await timed(f"raw batches of 1000 with {args.latency * 1000:.0f} ms latency", n,
                                               lambda: raw_batches(fake.url, n), "(reference)")
            stats = await fake.call(http, "stats")
            assert stats["duplicates"] == 0, stats
            await pool.close()
    finally:
        fake.stop()
    return report(rates)


def report(rates: dict[str, float]) -> int:
    outbox = rates["outbox"]
    checks = [
        ("outbox / SDK one by one", outbox / rates["sdk_one"], TARGETS["sdk_one"]),
        ("outbox / SDK BatchProcessor", outbox / rates["sdk_batch"], TARGETS["sdk_batch"]),
        ("outbox / SDK hand-made batches (no bookkeeping)", outbox / rates["baseline"], TARGETS["baseline"]),
    ]
    print("ratios:")
    ok = True
    for label, ratio, target in checks:
        good = ratio >= target
        ok &= good
        print(f"  {label:<50} {ratio:6.2f}x  (target >= {target:g}x) {'ok' if good else 'MISSED'}")
    print(f"  {'outbox / raw aiohttp batches (reference)':<50} {outbox / rates['raw']:6.2f}x")
    latency_ok = rates["latency_rate"] >= TARGETS["latency_rate"]
    ok &= latency_ok
    print(f"  {'outbox with latency, events/s':<50} {rates['latency_rate']:6,.0f}   "
          f"(target >= {TARGETS['latency_rate']:,.0f}) {'ok' if latency_ok else 'MISSED'}")
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
