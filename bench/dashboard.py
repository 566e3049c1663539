"""Dashboard pages and `report funnel` at 1 M capi_events_log rows and 100 k dialogs.

Seeds a fresh database set-wise (tests/dashboard_data.py: 10 accounts, 20 directions, 100 k chats
over 90 days with their leads, dialogs, 200 k messages, levels and events; CRM decisions fill the
log to 1 M rows), serves the app on 127.0.0.1 and times every page over real HTTP, as one account's
viewer and as an admin of all accounts (median and worst of --repeat, the default 30-day period).
Baselines in the same run: GET /healthz (the floor of a request with a database round trip) for the
pages; for `report funnel`, the same report over the log itself (migration 006's view, which the
rollup replaced). Then EXPLAIN (ANALYZE) of each page's main query, showing the indexes it reads.

    .venv/bin/python bench/dashboard.py [--chats 100000] [--days 90] [--events 1000000] [--repeat 7] [--plans]

Uses TEST_DATABASE_URL's server, else the local PostgreSQL, else an embedded one (tests/dbsetup.py);
the database is created for the run and dropped afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.db import create_pool
from core.migrate import migrate
from core.settings import Settings
from qualibot import analytics, reports
from qualibot.app import create_app
from qualibot.dashboard import routes, viewers
from qualification import leads
from tests.dashboard_data import seed_dashboard
from tests.dbsetup import fresh_database
from tests.helpers import running

ACCOUNTS = [f"acc{k:02d}" for k in range(10)]
PAGES = ["funnel", "ads", "readiness", "window", "capture", "errors", "dialogs", "held"]
BUDGET_MS = 300.0
FUNNEL_BUDGET_MS = 100.0

# capi_funnel_daily as migration 006 defined it: a count over every row of the log
OLD_FUNNEL = """
SELECT day, direction_id, pixel_id, event_level, event_name, success, error, skipped, pending, total FROM (
    SELECT direction_id, pixel_id, (created_at AT TIME ZONE 'UTC')::date AS day, event_level, event_name,
           count(*) FILTER (WHERE status = 'success') AS success, count(*) FILTER (WHERE status = 'error') AS error,
           count(*) FILTER (WHERE status = 'skipped') AS skipped, count(*) FILTER (WHERE status = 'pending') AS pending,
           count(*) AS total
    FROM capi_events_log GROUP BY 1, 2, 3, 4, 5) f
ORDER BY day, direction_id, pixel_id, event_level, event_name"""


async def timed(call: Callable[[], Awaitable[Any]], repeat: int) -> tuple[float, float]:
    """(median, worst) in milliseconds, after one warm-up call."""
    await call()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await call()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times), max(times)


async def session(url: str, pool: asyncpg.Pool, account: str | None) -> aiohttp.ClientSession:
    _, token = await viewers.create(pool, account, "bench")
    http = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
    async with http.get(f"{url}/dashboard/login?token={token}") as resp:
        assert resp.status == 200, await resp.text()
    return http


async def get(http: aiohttp.ClientSession, url: str) -> None:
    async with http.get(url) as resp:
        assert resp.status == 200, (url, resp.status)
        await resp.read()


def plans(account: str, dialog_id: int) -> list[tuple[str, str, list[Any]]]:
    since = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=29)
    dirs = [f"{account}-a", f"{account}-b"]
    readiness, r_args = reports.build(reports.READINESS, reports.Filters(directions=tuple(dirs)))
    errors, e_args = reports.build(reports.ERRORS_AUDIT, reports.Filters(directions=tuple(dirs), since=since.date(),
                                                                         limit=100))
    funnel, f_args = reports.build(reports.FUNNEL, reports.Filters())
    return [
        ("report funnel (all time, every direction)", funnel, f_args),
        ("funnel page", reports._FUNNEL_DAYS_SQL.format(directions="AND direction_id = ANY($2::text[])"),
         [since.date(), dirs]),
        ("ads page", analytics._ADS_SQL.format(where="AND account_id = $2"), [since, account]),
        ("ads page, every account", analytics._ADS_SQL.format(where=""), [since]),
        ("readiness page", readiness, r_args),
        ("window page", analytics._WINDOW_SQL.format(where="AND account_id = $2"), [since, account]),
        ("window page, every account", analytics._WINDOW_SQL.format(where=""), [since]),
        ("capture page", leads._CAPTURE_SQL.format(account="AND account_id = $2"), [since, account]),
        ("errors page", errors, e_args),
        ("dialogs page, one ad", analytics._DIALOGS_SQL.format(where="AND ad_id = $2 AND account_id = $3",
                                                               limit="$4"),
         [since, f"{account}-ad-1", account, 200]),
        ("dialogs page, one ad, every account", analytics._DIALOGS_SQL.format(where="AND ad_id = $2", limit="$3"),
         [since, f"{account}-ad-1", 200]),
        ("held page", reports._HELD_PAGE_SQL, [since, account, None, routes.HELD_SHOWN]),
        ("dialog page: its events", "SELECT * FROM capi_events_log WHERE dialog_analysis_id = $1", [dialog_id]),
    ]


async def run(chats: int, days: int, events: int, repeat: int, show_plans: bool) -> int:
    failures = 0
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(Path(tmp)) as dsn:
            conn = await asyncpg.connect(dsn)
            try:
                await migrate(conn)
                started = time.perf_counter()
                await seed_dashboard(conn, ACCOUNTS, chats=chats, days=days, events=events)
                await conn.execute(reports._MERGE_SQL)  # what the worker's loop does within a minute
                await conn.execute("VACUUM ANALYZE")
                counts = await conn.fetchrow(
                    "SELECT (SELECT count(*) FROM capi_events_log) AS log, (SELECT count(*) FROM dialog_analysis) "
                    "AS dialogs, (SELECT count(*) FROM messages) AS messages, "
                    "(SELECT count(*) FROM capi_funnel_rollup) AS rollup")
                print(f"seeded {counts['log']:,} capi_events_log rows, {counts['dialogs']:,} dialogs, "
                      f"{counts['messages']:,} messages in {time.perf_counter() - started:.0f} s; "
                      f"rollup {counts['rollup']:,} rows\n")
                dialog_id = await conn.fetchval(
                    "SELECT min(id) FROM dialog_analysis WHERE account_id = $1 AND analysis_evidence IS NOT NULL",
                    ACCOUNTS[0])
            finally:
                await conn.close()
            pool = await create_pool(dsn, max_size=4)
            try:
                failures += await report_funnel(pool, repeat)
                failures += await pages(pool, dsn, tmp, dialog_id, repeat)
                async with pool.acquire() as c:
                    for title, sql, args in plans(ACCOUNTS[0], dialog_id):
                        async with c.transaction():
                            if title.startswith(("ads page", "window page")):
                                # as analytics.ads and .window run (a tree before migration 021 has none)
                                await c.execute(getattr(analytics, "_LOOKUP_LEADS", "SELECT 1"))
                            plan = [r[0] for r in await c.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
                        scans = sorted({line.strip().split(" on ")[0].lstrip("-> ").strip() + " on " +
                                        line.split(" on ")[1].split()[0] for line in plan
                                        if " on " in line and "Scan" in line} |
                                       {head for head in (line.strip().lstrip("-> ").split("  (")[0] for line in plan)
                                        if ("Join" in head or "Nested Loop" in head) and ":" not in head})
                        print(f"== EXPLAIN {title}: " + "; ".join(scans))
                        if show_plans:
                            print("\n".join("   " + line for line in plan))
            finally:
                await pool.close()
    print("\nevery figure within its budget" if not failures else f"\n{failures} figure(s) over budget")
    return 1 if failures else 0


async def report_funnel(pool: asyncpg.Pool, repeat: int) -> int:
    new, new_worst = await timed(lambda: reports.fetch(pool, reports.FUNNEL, reports.Filters()), repeat)
    old, _ = await timed(lambda: pool.fetch(OLD_FUNNEL), max(3, repeat // 2))
    print(f"report funnel (all time): {new:.1f} ms median, {new_worst:.1f} ms worst; over the log itself "
          f"(the old view) {old:.0f} ms: {old / new:.0f}x faster")
    # a busy minute before the merge: up to 5,000 single-row status changes, each leaving two delta rows
    async with pool.acquire() as c:
        await c.execute("""DO $$ BEGIN FOR k IN 1..5000 LOOP
                               UPDATE capi_events_log SET status = 'success' WHERE id = k * 97 AND status <> 'success';
                           END LOOP; END $$""")
    unmerged = await pool.fetchval("SELECT count(*) FROM capi_funnel_rollup WHERE NOT merged")
    busy, busy_worst = await timed(lambda: reports.fetch(pool, reports.FUNNEL, reports.Filters()), repeat)
    await reports.merge_funnel_rollup(pool)
    print(f"report funnel with {unmerged:,} unmerged delta rows: {busy:.1f} ms median, {busy_worst:.1f} ms worst\n")
    return int(max(new, busy) > FUNNEL_BUDGET_MS)


async def pages(pool: asyncpg.Pool, dsn: str, tmp: str, dialog_id: int, repeat: int) -> int:
    settings = Settings(database_url=dsn, data_dir=Path(tmp) / "data", openai_api_key=None)
    failures = 0
    async with running(create_app(settings, pool=pool)) as url:
        plain = aiohttp.ClientSession()
        floor, _ = await timed(lambda: get(plain, f"{url}/healthz"), repeat)
        await plain.close()
        print(f"baseline GET /healthz: {floor:.1f} ms median")
        for who, account in ((f"viewer of {ACCOUNTS[0]}", ACCOUNTS[0]), ("admin, every account", None)):
            http = await session(url, pool, account)
            try:
                print(f"-- {who}")
                paths = [f"/dashboard/{p}" for p in PAGES] + [
                    "/dashboard/ads?format=csv", f"/dashboard/dialogs?ad={ACCOUNTS[0]}-ad-1",
                    f"/dashboard/dialogs/{dialog_id}"]
                for path in paths:
                    median, worst = await timed(partial(get, http, url + path), repeat)
                    failures += median > BUDGET_MS
                    print(f"   {path:34} {median:6.1f} ms median, {worst:6.1f} ms worst, "
                          f"{median / floor:5.1f}x /healthz{'  OVER BUDGET' if median > BUDGET_MS else ''}")
            finally:
                await http.close()
    print()
    return failures


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--chats", type=int, default=100_000)
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--days", type=int, default=90, help="the chats' spread: more days, more leads "
                        "outside the 30-day period")
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument("--plans", action="store_true", help="print the whole plans, not only their scans")
    args = parser.parse_args()
    return asyncio.run(run(args.chats, args.days, args.events, args.repeat, args.plans))


if __name__ == "__main__":
    sys.exit(main())
