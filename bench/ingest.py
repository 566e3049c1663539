"""Ingest benchmark: Evolution `messages.upsert` webhooks at the real service vs a minimal baseline.

Both servers run as their own processes on a fresh database of the same PostgreSQL:
- service:  `qualibot serve` (auth, parse, store the message; its worker's intake drain links it:
  lead + dialog + debounced job). The reply buffer is set to an hour, so no dialog job runs
  during the benchmark: what is measured is intake, not the bot's replies;
- baseline: an aiohttp handler that inserts the raw body into a jsonb table, nothing else, on as
  many connections as the service's intake has, reused without a reset, committing synchronously.
The same load generator (this process) posts the same bodies (every request a new chat, so every
request creates a lead, a dialog, a message and a job) at both, first closed-loop at full speed
(requests/s, p50, p99), then open-loop at half of each one's own peak (p50, p99 measured from the
scheduled send time, so a stalled server cannot hide its queueing). A service round ends when
every message it was sent is linked to its dialog, not at the last 200, so the drain's work
counts in the service's requests/s and CPU. Prints the ratio, and how long messages waited for
the drain (receipt to link).

    .venv/bin/python bench/ingest.py [--requests 4000] [--rounds 3] [--concurrency 32] [--half-seconds 5]
        [--preload N] [--compare-preload 10000,1000000] [--route evolution|cloud] [--intake linked|store]

`--route cloud` posts Meta's WhatsApp Cloud API webhook instead (`POST /webhooks/whatsapp-cloud`,
Meta's documented text message, signed with the number's app secret), each a new chat, at the
service, and the same bodies at the same raw-insert baseline in the same run.

`--intake store` holds the service's drain (`bench/serve_store_only.py`): a round ends at its last 200,
so what is measured is the webhook's own step (authenticate, parse, group commit), without the
lead, dialog and job each message is linked to. It splits the service's cost between the two steps.

`--preload N` first stores N messages (N/10 dialogs and leads, set-based SQL) and ANALYZEs, so the
intake runs against large tables; `--compare-preload A,B` runs the whole benchmark once per size
and prints the service's r/s and p99 for each, and their ratio.

Database: TEST_DATABASE_URL's server, else PostgreSQL on 127.0.0.1:5432, else an embedded one.
Targets (issue 18.4, against the fair baseline): service ≥ 1.0 × baseline requests/s, p99 < 50 ms at half
of peak.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dbsetup import fresh_database  # noqa: E402
from tests.helpers import wait_for  # noqa: E402
from tests.proof.database import prepare  # noqa: E402
from tests.seed import WEBHOOK_SECRET, seed, tenant_config  # noqa: E402

FIXTURE = ROOT / "tests" / "bot" / "fixtures" / "evolution" / "text-2.3.7.json"
POOL_SIZE = 10  # the service's default db_pool_max; the baseline gets the same


# -- the baseline server (run in its own process: `ingest.py --baseline PORT DSN`) ---------------

# Fair to the naive way (issue 18.4): the connections the service's intake writes on (all of the
# pool but 3, `bot.connections`), kept and reused with no reset between requests, each INSERT
# committed synchronously before its 200, as the service's are.
BASELINE_CONNECTIONS = POOL_SIZE - 3
BASELINE_SETTINGS = {"synchronous_commit": "on"}


async def serve_baseline(port: int, dsn: str) -> None:
    from aiohttp import web

    setup = await asyncpg.connect(dsn)
    await setup.execute(
        "CREATE TABLE IF NOT EXISTS bench_raw (id bigserial PRIMARY KEY, body jsonb NOT NULL,"
        " received_at timestamptz NOT NULL DEFAULT now())"
    )
    await setup.close()
    idle: asyncio.Queue[asyncpg.Connection] = asyncio.Queue()
    for _ in range(BASELINE_CONNECTIONS):
        idle.put_nowait(await asyncpg.connect(dsn, server_settings=BASELINE_SETTINGS))

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        conn = await idle.get()
        try:
            await conn.execute("INSERT INTO bench_raw (body) VALUES ($1::jsonb)", body.decode())
        finally:
            idle.put_nowait(conn)
        return web.json_response({"status": "stored"})

    async def healthz(_: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    app = web.Application()
    for route in ROUTES.values():
        app.router.add_post(route.path, handler)
    app.router.add_get("/healthz", healthz)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    print("baseline listening", flush=True)
    await asyncio.Event().wait()


# -- load generation ---------------------------------------------------------------------------

@dataclass
class Result:
    requests: int
    seconds: float
    latencies: list[float]
    errors: int

    @property
    def rps(self) -> float:
        return self.requests / self.seconds

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000


class Bodies:
    """Distinct chats: every body a new phone number and message id (a new lead and dialog)."""

    def __init__(self) -> None:
        self.template = json.loads(FIXTURE.read_text(encoding="utf-8"))
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        body = copy.deepcopy(self.template)
        jid = f"7916{self.n:07d}@s.whatsapp.net"
        body["data"]["key"].update({"remoteJid": jid, "remoteJidAlt": jid, "id": f"3EB0BENCH{self.n:012d}"})
        body["data"]["message"]["conversation"] = f"Здравствуйте! Сколько стоит имплант? #{self.n}"
        return json.dumps(body, ensure_ascii=False).encode()


HEADERS = {"X-Webhook-Secret": WEBHOOK_SECRET, "Content-Type": "application/json"}


class CloudBodies:
    """`--route cloud`: Meta's documented text message (tests/bot/fixtures/cloud), a new chat each."""

    def __init__(self) -> None:
        from tests.fakes.cloud_webhook import text_body
        self.text_body = text_body
        self.n = 0

    def next(self) -> bytes:
        self.n += 1
        body = self.text_body(f"5511{self.n:09d}", f"Olá! Quanto custa o implante? #{self.n}",
                              f"wamid.BENCH{self.n:012d}")
        return json.dumps(body, ensure_ascii=False).encode()


@dataclass
class Route:
    path: str
    bodies: type[Bodies] | type[CloudBodies]

    def headers(self, body: bytes) -> dict[str, str]:
        if self.bodies is Bodies:
            return HEADERS
        from bot.cloud.signature import HEADER, sign
        from tests.fakes.cloud_webhook import APP_SECRET
        return {HEADER: sign(body, APP_SECRET), "Content-Type": "application/json"}  # signed as Meta signs


ROUTES = {"evolution": Route("/webhooks/evolution", Bodies), "cloud": Route("/webhooks/whatsapp-cloud", CloudBodies)}
ROUTE = ROUTES["evolution"]  # set from --route


async def _post(http: aiohttp.ClientSession, url: str, body: bytes) -> bool:
    async with http.post(url, data=body, headers=ROUTE.headers(body)) as resp:
        await resp.read()
        return resp.status == 200


async def closed_loop(url: str, bodies: list[bytes], concurrency: int) -> Result:
    latencies: list[float] = []
    errors = 0
    queue = iter(bodies)
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def worker() -> None:
            nonlocal errors
            for body in queue:
                start = time.perf_counter()
                ok = await _post(http, url, body)
                latencies.append(time.perf_counter() - start)
                errors += not ok

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return Result(len(bodies), elapsed, latencies, errors)


async def open_loop(url: str, bodies: list[bytes], rate: float) -> Result:
    """Send at a fixed rate whatever the answers do; latency counts from each request's due time."""
    latencies: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as http:

        async def one(body: bytes, due: float) -> None:
            nonlocal errors
            ok = await _post(http, url, body)
            latencies.append(time.perf_counter() - due)
            errors += not ok

        tasks = []
        started = time.perf_counter()
        sent = 0
        while sent < len(bodies):
            now = time.perf_counter()
            due_count = min(len(bodies), int((now - started) * rate) + 1)
            for i in range(sent, due_count):
                tasks.append(asyncio.create_task(one(bodies[i], started + i / rate)))
            sent = due_count
            await asyncio.sleep(0.002)
        await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return Result(len(bodies), elapsed, latencies, errors)


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


# -- orchestration -----------------------------------------------------------------------------

def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def wait_healthy(url: str, proc: subprocess.Popen[bytes], within: float = 60) -> None:
    deadline = time.monotonic() + within
    async with aiohttp.ClientSession() as http:
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise RuntimeError(f"server exited with {proc.returncode}")
            try:
                async with http.get(url + "/healthz") as resp:
                    if resp.status == 200:
                        return
            except aiohttp.ClientError:
                pass
            await asyncio.sleep(0.2)
    raise RuntimeError(f"{url} did not become healthy")


def start_service(dsn: str, port: int, command: list[str]) -> subprocess.Popen[bytes]:
    env = {**os.environ, "DATABASE_URL": dsn, "QUALIBOT_PORT": str(port), "QUALIBOT_LOG_LEVEL": "warning",
           "QUALIBOT_DB_POOL_MAX": str(POOL_SIZE),
           # no dialog job comes due during the run: replies are not intake
           "QUALIBOT_BUFFER_SECONDS": "3600", "QUALIBOT_BUFFER_MAX_SECONDS": "3600"}
    env.pop("OPENAI_API_KEY", None)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, cwd=ROOT)


def start_baseline(dsn: str, port: int) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, __file__, "--baseline", str(port), dsn],
                            stdout=subprocess.DEVNULL, cwd=ROOT)


async def backend_cpu(pool: asyncpg.Pool) -> dict[int, float]:
    """CPU seconds of this database's PostgreSQL backends (when the server runs on this machine)."""
    pids = await pool.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()")
    found = {}
    for row in pids:
        try:
            found[row["pid"]] = cpu_seconds(row["pid"])
        except (OSError, IndexError, ValueError):
            pass
    return found


@dataclass
class Cost:
    server: float  # CPU seconds per request in the server process
    database: float  # CPU seconds per request in PostgreSQL backends (0 when not measurable)


async def all_linked(pool: asyncpg.Pool, within: float = 120) -> None:
    """Wait until the service's drain has linked every stored message."""

    async def linked() -> bool:
        return not await pool.fetchval("SELECT EXISTS (SELECT 1 FROM messages WHERE dialog_id IS NULL)")

    await wait_for(linked, timeout=within, interval=0.005, what="the service to link every stored message")


async def measure(url: str, proc: subprocess.Popen[bytes], pool: asyncpg.Pool, bodies: list[bytes],
                  concurrency: int, *, drained: bool) -> tuple[Result, Cost]:
    before, db_before = cpu_seconds(proc.pid), await backend_cpu(pool)
    started = time.perf_counter()
    result = await closed_loop(url + ROUTE.path, bodies, concurrency)
    if drained:  # the round ends when intake is complete, not at the last 200
        await all_linked(pool)
        result.seconds = time.perf_counter() - started
    after, db_after = cpu_seconds(proc.pid), await backend_cpu(pool)
    database = sum(cpu - db_before.get(pid, 0.0) for pid, cpu in db_after.items())
    return result, Cost((after - before) / len(bodies), database / len(bodies))


PRELOAD_SQL = [
    # N/10 leads and dialogs of the seeded instance, phones 7800... (the load uses 7916...)
    """INSERT INTO leads (account_id, instance_name, phone, push_name, direction_id, created_at, updated_at)
       SELECT 'clinic', 'clinic-main', '7800' || lpad(g::text, 7, '0'), 'Client ' || g, 'implants',
              now() - interval '30 days', now() - interval '30 days'
       FROM generate_series(1, $1::int / 10) g""",
    """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id,
                                    client_message_count, last_client_message_at, last_message_at)
       SELECT account_id, instance_name, phone, id, direction_id, 5, updated_at, updated_at FROM leads
       WHERE phone LIKE '7800%'""",
    # ten messages per dialog, client and bot in turn
    """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, sent_at, delivery_status, external_id)
       SELECT d.instance_name, 'PRELOAD' || d.id || '-' || k, d.id,
              CASE WHEN k % 2 = 1 THEN 'client' ELSE 'bot' END, 'Stored message ' || k || ' of dialog ' || d.id,
              now() - interval '30 days' + k * interval '1 minute',
              CASE WHEN k % 2 = 0 THEN 'sent' END, CASE WHEN k % 2 = 0 THEN 'BOT' || d.id || '-' || k END
       FROM dialog_analysis d, generate_series(1, 10) k WHERE d.contact_phone LIKE '7800%'""",
]


async def preload(pool: asyncpg.Pool, messages: int) -> None:
    """Fill the database with `messages` stored messages over messages/10 dialogs and leads."""
    started = time.perf_counter()
    async with pool.acquire() as conn:
        for sql in PRELOAD_SQL:
            await conn.execute(sql, messages) if "$1" in sql else await conn.execute(sql)
        await conn.execute("ANALYZE leads; ANALYZE dialog_analysis; ANALYZE messages; ANALYZE jobs")
        count = await conn.fetchval("SELECT count(*) FROM messages")
        try:  # write the bulk load's dirty pages now, not during the measured run
            await conn.execute("CHECKPOINT")
        except asyncpg.InsufficientPrivilegeError:
            pass
    print(f"preloaded {count} messages in {time.perf_counter() - started:.1f} s", flush=True)


@dataclass
class Outcome:
    peaks: dict[str, list[Result]]
    costs: dict[str, list[Cost]]
    halves: dict[str, Result]
    stored: int
    jobs: int
    linked: int
    lag_ms: dict[str, tuple[float, float]]  # phase -> (p50, p99) of receipt-to-link time


LAG_SQL = """SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY lag) * 1000,
                    percentile_cont(0.99) WITHIN GROUP (ORDER BY lag) * 1000
             FROM (SELECT extract(epoch FROM d.created_at - m.created_at) AS lag
                   FROM messages m JOIN dialog_analysis d ON d.id = m.dialog_id
                   WHERE m.id > $1 AND m.id <= $2) x"""


async def last_message_id(pool: asyncpg.Pool) -> int:
    return int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM messages"))


async def run(args: argparse.Namespace, preload_messages: int = 0) -> Outcome:
    async with fresh_database(Path(tempfile.mkdtemp(prefix="qualibot-bench-"))) as dsn:
        pool = await prepare(dsn, evolution_url="http://127.0.0.1:9")  # no reply is sent in a run
        if ROUTE.bodies is CloudBodies:
            from tests.fakes.cloud_webhook import with_cloud_number
            await seed(pool, with_cloud_number(tenant_config(evolution_url="http://127.0.0.1:9")))
        if preload_messages:
            await preload(pool, preload_messages)
        names = ("baseline", "service")
        ports = {name: free_port() for name in names}
        linking = args.intake == "linked"  # else the drain is held: the store step alone
        command = args.service_cmd.split() if args.service_cmd else (
            [str(ROOT / ".venv" / "bin" / "qualibot"), "serve"] if linking
            else [sys.executable, str(ROOT / "bench" / "serve_store_only.py")])
        procs = {"baseline": start_baseline(dsn, ports["baseline"]),
                 "service": start_service(dsn, ports["service"], command)}
        peaks: dict[str, list[Result]] = {name: [] for name in names}
        costs: dict[str, list[Cost]] = {name: [] for name in names}
        halves: dict[str, Result] = {}
        lag_ms: dict[str, tuple[float, float]] = {}
        try:
            urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
            for name in names:
                await wait_healthy(urls[name], procs[name])
            gen = ROUTE.bodies()
            for name in names:  # warm up both: connections, prepared statements, caches
                await closed_loop(urls[name] + ROUTE.path, [gen.next() for _ in range(500)],
                                  args.concurrency)
            if linking:
                await all_linked(pool)
            first = await last_message_id(pool)
            for _ in range(args.rounds):  # alternate, so a noisy moment hurts both alike
                for name in names:
                    bodies = [gen.next() for _ in range(args.requests)]
                    result, cost = await measure(urls[name], procs[name], pool, bodies, args.concurrency,
                                                 drained=linking and name == "service")
                    peaks[name].append(result)
                    costs[name].append(cost)
            if linking:
                lag_ms["peak"] = tuple(await pool.fetchrow(LAG_SQL, first, await last_message_id(pool)))
            for name in names:
                rate = statistics.median(r.rps for r in peaks[name]) / 2
                bodies = [gen.next() for _ in range(int(rate * args.half_seconds))]
                first = await last_message_id(pool)
                halves[name] = await open_loop(urls[name] + ROUTE.path, bodies, rate)
                if linking and name == "service":
                    await all_linked(pool)
                    lag_ms["half"] = tuple(await pool.fetchrow(LAG_SQL, first, await last_message_id(pool)))
            stored = await pool.fetchval("SELECT count(*) FROM messages") - preload_messages
            linked = await pool.fetchval("SELECT count(*) FROM messages WHERE dialog_id IS NOT NULL") - preload_messages
            jobs = await pool.fetchval("SELECT count(*) FROM jobs WHERE name = 'bot.dialog'")
        finally:
            for proc in procs.values():
                proc.terminate()
            for proc in procs.values():
                proc.wait(timeout=30)
            await pool.close()
    return Outcome(peaks, costs, halves, stored, jobs, linked, lag_ms)


def median_result(results: list[Result]) -> Result:
    return sorted(results, key=lambda r: r.rps)[len(results) // 2]


async def compare_preload(args: argparse.Namespace, sizes: list[int]) -> int:
    """The whole benchmark once per preloaded size; the service's figures side by side."""
    outcomes = []
    for size in sizes:
        print(f"--- {size} stored messages before the run", flush=True)
        outcome = await run(args, size)
        report(args, outcome)
        outcomes.append(outcome)
    print(f"{'stored messages':>16} {'service peak r/s':>17} {'peak p99 ms':>12} {'half-peak p99 ms':>17}"
          f" {'ratio to baseline':>18}")
    for size, outcome in zip(sizes, outcomes, strict=True):
        peak, base = median_result(outcome.peaks["service"]), median_result(outcome.peaks["baseline"])
        print(f"{size:>16} {peak.rps:>17.0f} {peak.pct(0.99):>12.1f} {outcome.halves['service'].pct(0.99):>17.1f}"
              f" {peak.rps / base.rps:>18.2f}")
    first, last = outcomes[0], outcomes[-1]
    rps = median_result(last.peaks["service"]).rps / median_result(first.peaks["service"]).rps
    p99 = last.halves["service"].pct(0.99) / first.halves["service"].pct(0.99)
    print(f"{sizes[-1]} vs {sizes[0]} stored messages: service r/s x{rps:.2f}, p99 at half peak x{p99:.2f}")
    return 0


async def run_once(args: argparse.Namespace) -> int:
    report(args, await run(args, args.preload))
    return 0


def report(args: argparse.Namespace, outcome: Outcome) -> None:
    peaks, costs, halves, stored, jobs = outcome.peaks, outcome.costs, outcome.halves, outcome.stored, outcome.jobs
    print(f"route: {ROUTE.path} ({args.route}); service measured "
          + ("until every message is linked" if args.intake == "linked" else "at the store step alone (drain held)"))
    print(f"ingest: {args.rounds} alternating rounds of {args.requests} requests per server, concurrency "
          f"{args.concurrency}, every request a new chat; {os.cpu_count()} CPUs shared by the load generator, "
          "both servers and PostgreSQL")
    print(f"{'':<9} {'peak r/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'app cpu':>8} {'db cpu':>7}   "
          f"{'half r/s':>9} {'p50 ms':>7} {'p99 ms':>7} {'errors':>6}   rounds r/s")
    median_rps = {}
    for name, results in peaks.items():
        mid = median_result(results)
        median_rps[name] = mid.rps
        half = halves[name]
        errors = sum(r.errors for r in results) + half.errors
        rounds = " ".join(f"{r.rps:.0f}" for r in results)
        app_cpu = statistics.median(c.server for c in costs[name]) * 1e6
        db_cpu = statistics.median(c.database for c in costs[name]) * 1e6
        print(f"{name:<9} {mid.rps:>9.0f} {mid.pct(0.5):>7.1f} {mid.pct(0.99):>7.1f} "
              f"{app_cpu:>6.0f}us {db_cpu:>5.0f}us   {half.rps:>9.0f} {half.pct(0.5):>7.1f} "
              f"{half.pct(0.99):>7.1f} {errors:>6}   {rounds}")
    print(f"throughput ratio service/baseline (medians): {median_rps['service'] / median_rps['baseline']:.2f}"
          " (target >= 1.0)")
    print("app cpu / db cpu: CPU time per request in the server process / in its PostgreSQL backends "
          "(robust to other load on the machine, unlike r/s)")
    print(f"service p99 at half of its peak: {halves['service'].pct(0.99):.1f} ms (target < 50 ms)")
    print(f"service stored {stored} messages, linked {outcome.linked} to their dialogs, and queued {jobs} "
          "debounced dialog jobs (one per chat)")
    for phase, (p50, p99) in outcome.lag_ms.items():
        print(f"receipt to link (the drain's lag) at {'full speed' if phase == 'peak' else 'half of peak'}: "
              f"p50 {p50:.0f} ms, p99 {p99:.0f} ms")


def main() -> int:
    if len(sys.argv) == 4 and sys.argv[1] == "--baseline":
        asyncio.run(serve_baseline(int(sys.argv[2]), sys.argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--requests", type=int, default=4000)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--half-seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--service-cmd", default="",
                        help="command that serves the app on QUALIBOT_PORT (default: qualibot serve)")
    parser.add_argument("--preload", type=int, default=0, metavar="N",
                        help="store N messages (N/10 dialogs and leads) before the run")
    parser.add_argument("--compare-preload", default="", metavar="A,B",
                        help="run once per preloaded size (e.g. 10000,1000000) and compare the service's p99")
    parser.add_argument("--intake", choices=("linked", "store"), default="linked",
                        help="linked: a service round ends when the drain has linked every message; store: "
                             "the drain held (bench/serve_store_only.py), the webhook's own step alone")
    parser.add_argument("--route", choices=sorted(ROUTES), default="evolution",
                        help="which webhook the service gets: Evolution's, or Meta's WhatsApp Cloud API")
    args = parser.parse_args()
    global ROUTE
    ROUTE = ROUTES[args.route]
    if args.compare_preload:
        sizes = [int(x) for x in args.compare_preload.split(",") if x.strip()]
        return asyncio.run(compare_preload(args, sizes))
    return asyncio.run(run_once(args))


if __name__ == "__main__":
    sys.exit(main())
