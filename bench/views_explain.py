"""Do the audit views use indexes at 1M rows of capi_events_log?

Fills a fresh database with 1,000,000 log rows (one INSERT ... generate_series: a year of events,
appended in time order as a real log is, over 20 directions and 3 levels, 80 % success), then for
each query `qualibot report` runs (and a few typical hand-written audit queries) prints
EXPLAIN (ANALYZE, BUFFERS) and the time ratio against the same query with index scans disabled
(the sequential-scan baseline, measured in the same run).

    .venv/bin/python bench/views_explain.py [--rows 1000000] [--directions 20] [--quiet]

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
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.migrate import migrate
from qualibot.reports import ERRORS, FUNNEL, READINESS, Filters, Report, build
from tests.dbsetup import fresh_database

FILL = """
INSERT INTO capi_events_log (direction_id, pixel_id, event_name, event_level, event_id, event_time,
                             source, status, attempts, error, hint, request, response,
                             created_at, updated_at, sent_at)
SELECT d, 'px-' || right(d, 2), n, lvl, 'bench-' || i, t, 'whatsapp', st,
       CASE WHEN st = 'pending' THEN 0 ELSE 1 END,
       CASE WHEN st = 'error' THEN 'Invalid parameter' WHEN st = 'skipped' THEN 'no ctwa_clid' END,
       CASE WHEN st = 'error' THEN 'Meta accepts LeadSubmitted, QualifiedLead, ...' END,
       jsonb_build_object('data', jsonb_build_array(jsonb_build_object(
           'event_name', n, 'event_time', extract(epoch FROM t)::bigint, 'event_id', 'bench-' || i,
           'action_source', 'business_messaging', 'messaging_channel', 'whatsapp',
           'user_data', jsonb_build_object('whatsapp_business_account_id', '1029384756',
                                           'ctwa_clid', md5(i::text))))),
       CASE WHEN st = 'error' THEN '{"error": {"message": "Invalid parameter", "code": 100,
                                     "error_subcode": 2804066}}'::jsonb
            WHEN st = 'success' THEN '{"events_received": 1}'::jsonb END,
       t, t, CASE WHEN st = 'success' THEN t END
FROM (
    SELECT i,
           'dir-' || lpad(floor(rd * $2)::int::text, 2, '0') AS d,
           CASE WHEN rl < 0.60 THEN 1 WHEN rl < 0.88 THEN 2 ELSE 3 END::smallint AS lvl,
           CASE WHEN rs < 0.80 THEN 'success' WHEN rs < 0.90 THEN 'error'
                WHEN rs < 0.97 THEN 'skipped' ELSE 'pending' END AS st,
           now() - interval '365 days' + (i * interval '365 days') / $1 AS t
    FROM (SELECT i, random() AS rd, random() AS rl, random() AS rs
          FROM generate_series(1::bigint, $1::bigint) AS i) r
) g
CROSS JOIN LATERAL (SELECT (ARRAY['Lead', 'CompleteRegistration', 'Schedule'])[g.lvl] AS n) names
"""


async def fill(conn: asyncpg.Connection, rows: int, directions: int) -> float:
    await conn.execute("INSERT INTO user_accounts (id, name, access_token) VALUES ('bench', 'Bench', 'x')")
    await conn.execute(
        """INSERT INTO account_directions (id, account_id, name, pixel_id, capi_enabled)
           SELECT 'dir-' || lpad(k::text, 2, '0'), 'bench', 'Direction ' || k, 'px-' || lpad(k::text, 2, '0'), true
           FROM generate_series(0, $1 - 1) AS k""",
        directions,
    )
    started = time.perf_counter()
    await conn.execute("SELECT setseed(0.42)")
    await conn.execute(FILL, rows, directions)
    await conn.execute("VACUUM ANALYZE capi_events_log")
    return time.perf_counter() - started


def cases() -> list[tuple[str, str, list[Any]]]:
    week_ago = (datetime.now(UTC) - timedelta(days=7)).date()
    month_ago = (datetime.now(UTC) - timedelta(days=30)).date()

    def report(r: Report, **kw: Any) -> tuple[str, list[Any]]:
        return build(r, Filters(**kw))

    out: list[tuple[str, str, list[Any]]] = []
    for title, (sql, args) in [
        ("report funnel --direction dir-03 --since <30 days ago>", report(FUNNEL, direction="dir-03", since=month_ago)),
        ("report funnel --since <7 days ago>", report(FUNNEL, since=week_ago)),
        ("report readiness --direction dir-03", report(READINESS, direction="dir-03")),
        ("report readiness", report(READINESS)),
        ("report errors --direction dir-03 (LIMIT 100)", report(ERRORS, direction="dir-03", limit=100)),
        ("report errors --since <7 days ago> (LIMIT 100)", report(ERRORS, since=week_ago, limit=100)),
    ]:
        out.append((title, sql, args))
    out.append((
        "audit: SELECT * FROM capi_errors_recent LIMIT 20",
        "SELECT * FROM capi_errors_recent LIMIT 20", [],
    ))
    out.append((
        "audit: funnel of one direction for one day",
        "SELECT * FROM capi_funnel_daily WHERE direction_id = $1 AND day = $2",
        ["dir-07", (datetime.now(UTC) - timedelta(days=3)).date()],
    ))
    return out


async def timed(conn: asyncpg.Connection, sql: str, args: list[Any], repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        await conn.fetch(sql, *args)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def seq_baseline(conn: asyncpg.Connection, sql: str, args: list[Any]) -> float:
    async with conn.transaction():
        for knob in ("enable_indexscan", "enable_bitmapscan", "enable_indexonlyscan"):
            await conn.execute(f"SET LOCAL {knob} = off")
        return await timed(conn, sql, args, repeat=3)


async def run(rows: int, directions: int, quiet: bool) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        async with fresh_database(Path(tmp)) as dsn:
            conn = await asyncpg.connect(dsn, statement_cache_size=0)  # every run planned afresh
            try:
                await migrate(conn)
                seconds = await fill(conn, rows, directions)
                count = await conn.fetchval("SELECT count(*) FROM capi_events_log")
                print(f"filled {count:,} capi_events_log rows in {seconds:.1f} s (incl. VACUUM ANALYZE)\n")
                missing = 0
                for title, sql, args in cases():
                    plan = [r[0] for r in await conn.fetch(f"EXPLAIN (ANALYZE, BUFFERS) {sql}", *args)]
                    uses_index = any("Index" in line for line in plan)
                    missing += not uses_index
                    fast = await timed(conn, sql, args)
                    slow = await seq_baseline(conn, sql, args)
                    print(f"== {title}")
                    print(f"   {fast * 1000:.1f} ms with indexes, {slow * 1000:.1f} ms sequential: "
                          f"{slow / fast:.0f}x faster; index used: {'yes' if uses_index else 'NO'}")
                    if not quiet:
                        print("\n".join("   " + line for line in plan))
                    print()
            finally:
                await conn.close()
    print("every query uses an index" if not missing else f"{missing} quer(ies) without an index")
    return 1 if missing else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--directions", type=int, default=20, choices=range(4, 101), metavar="4..100")
    parser.add_argument("--quiet", action="store_true", help="ratios only, no plans")
    args = parser.parse_args()
    return asyncio.run(run(args.rows, args.directions, args.quiet))


if __name__ == "__main__":
    sys.exit(main())
