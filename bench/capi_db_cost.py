"""PostgreSQL CPU of the CAPI outbox per event, statement by statement, for two schemas.

Usage: .venv/bin/python bench/capi_db_cost.py [--events 20000] [--runs 3] [--before-root DIR]

`bench/capi_send.py` times the whole outbox on two shared CPUs, where the load generator, the fake
Graph API and PostgreSQL compete and a run's events/s moves by a third from one run to the next.
This one asks PostgreSQL alone: on one connection, with nothing else running, it records N
level-1 events the way `bench/capi_send.py` does (1,000 per transaction), claims them
(`capi.ledger.claim`), and writes their success with the dialogs' sent flags
(`capi.ledger.commit_success` with `qualification.dialogs.mark_sent`), batch after batch, reading
the backend's own CPU time (/proc/<pid>/stat, so the server must run on this machine) around each
step. No HTTP: what is measured is the bookkeeping an event costs the database.

With `--before-root DIR`, each run is repeated on a database migrated with DIR's migrations (the
statements are this tree's), alternating, so the two schemas are compared on the same machine
in the same minutes. Prints microseconds of backend CPU per event for each step.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from capi_send import _RECORD_SQL, build, prepare_dialogs  # noqa: E402

from capi import ledger  # noqa: E402
from capi.hooks import Delivered  # noqa: E402
from capi.payload import audit_request  # noqa: E402
from core.db import create_pool  # noqa: E402
from core.migrate import MIGRATIONS_DIR, installation_id, migrate  # noqa: E402
from qualification.dialogs import mark_sent  # noqa: E402
from tests.dbsetup import fresh_database  # noqa: E402
from tests.seed import PIXEL_ID, seed  # noqa: E402

BATCH = 1000
STEPS = ("insert", "claim", "success", "flags")
_TICKS = os.sysconf("SC_CLK_TCK")


def backend_cpu(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICKS  # utime + stime


async def one_run(migrations: Path, events: int) -> dict[str, float]:
    """Backend CPU seconds per step for `events` events on a fresh database with these migrations."""
    async with fresh_database(Path(tempfile.mkdtemp())) as dsn:
        conn = await asyncpg.connect(dsn)
        await migrate(conn, migrations)
        await conn.close()
        pool = await create_pool(dsn, max_size=1, min_size=1)  # one backend: its CPU is the steps'
        try:
            await seed(pool)
            async with pool.acquire() as conn:
                installation = await installation_id(conn)
                pid = await conn.fetchval("SELECT pg_backend_pid()")
            facts = await prepare_dialogs(pool, events)
            at = datetime.now(UTC) - timedelta(minutes=5)
            spent = dict.fromkeys(STEPS, 0.0)
            flags = 0.0

            async def timed_flags(conn: asyncpg.Connection, delivered: Sequence[Delivered]) -> None:
                nonlocal flags
                before = backend_cpu(pid)
                await mark_sent(conn, delivered)
                flags += backend_cpu(pid) - before

            @contextlib.contextmanager
            def step(name: str) -> Iterator[None]:
                before = backend_cpu(pid)
                yield
                spent[name] += backend_cpu(pid) - before

            for i in range(0, len(facts), BATCH):
                part = facts[i:i + BATCH]
                built = [build(installation, f, at) for f in part]
                requests = [json.dumps(audit_request(e, None)) for e in built]
                with step("insert"):
                    async with pool.acquire() as conn, conn.transaction():
                        await conn.execute(_RECORD_SQL, [f.dialog_id for f in part], [f.phone for f in part],
                                           requests, PIXEL_ID, at, [e["event_id"] for e in built])
                with step("claim"):
                    rows = await ledger.claim(pool, BATCH, 60.0)
                assert len(rows) == len(part)
                answer = {"events_received": len(rows), "fbtrace_id": "bench"}
                outcomes = [ledger.Outcome(r, "success", response=answer) for r in rows]
                with step("success"):
                    await ledger.commit_success(pool, outcomes, {}, timed_flags)
            spent["success"] -= flags  # the flags' statement ran inside the success transaction
            spent["flags"] = flags
            done = await pool.fetchval("SELECT count(*) FROM dialog_analysis WHERE capi_interest_sent")
            if done != events:
                raise RuntimeError(f"{done} of {events} dialogs flagged")
            spent.update(await hot_shares(pool))
            return spent
        finally:
            await pool.close()


async def hot_shares(pool: asyncpg.Pool) -> dict[str, float]:
    """The share of each table's updates that were HOT (no new index entries), as `hot:<table>`."""
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_stat_force_next_flush()")  # PostgreSQL 15+: this backend's counts now
    await asyncio.sleep(0.1)
    rows = await pool.fetch(
        "SELECT relname, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables"
        " WHERE relname IN ('capi_events_log', 'dialog_analysis')")
    return {f"hot:{r['relname']}": r["n_tup_hot_upd"] / max(r["n_tup_upd"], 1) for r in rows}


def line(label: str, runs: list[dict[str, float]], events: int) -> str:
    cells = []
    for name in (*STEPS, "total"):
        per_event = [(cpu_total(r) if name == "total" else r[name]) / events * 1e6 for r in runs]
        cells.append(f"{name} {statistics.median(per_event):5.1f}")
    hot = "  ".join(f"{k} {statistics.median(r[k] for r in runs):.0%}" for k in sorted(runs[0]) if k.startswith("hot:"))
    return (f"  {label:<8} " + "   ".join(cells) + "   (µs of backend CPU per event, median of runs)\n"
            f"           HOT updates: {hot}")


def cpu_total(run: dict[str, float]) -> float:
    return sum(run[name] for name in STEPS)


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--before-root", type=Path, help="a checkout whose migrations are the 'before' schema")
    args = parser.parse_args()
    trees = {"this": Path(str(MIGRATIONS_DIR))}
    if args.before_root:
        trees["before"] = args.before_root / "migrations"
    results: dict[str, list[dict[str, float]]] = {name: [] for name in trees}
    print(f"capi_db_cost: {args.events} events in batches of {BATCH}, {args.runs} runs per schema, alternated")
    for n in range(args.runs):
        for name, migrations in trees.items():
            started = time.perf_counter()
            spent = await one_run(migrations, args.events)
            results[name].append(spent)
            shown = ", ".join(f"{k} {spent[k]:.2f}" for k in STEPS)
            print(f"  run {n + 1} {name:<6} backend CPU s: {shown} ({time.perf_counter() - started:.0f} s)",
                  flush=True)
    for name in trees:
        print(line(name, results[name], args.events))
    if "before" in results:
        ratio = (statistics.median(cpu_total(r) for r in results["this"])
                 / statistics.median(cpu_total(r) for r in results["before"]))
        print(f"  this ÷ before, total: {ratio:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(asyncio.run(main()))
