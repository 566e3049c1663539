"""The audit reports behind `qualibot report`: queries over the views of migrations/006_views.sql,
and the funnel's daily rollup (migration 017) that capi_funnel_daily reads.

Each report is a `Report` (its columns, in output order) and `build(report, filters)` gives the SQL
and its arguments; only the filters that are set become conditions, so every query the CLI runs
has a plain `direction_id = $n` / `day >= $n` / `created_at >= $n` the planner can match to an
index (bench/views_explain.py prints their plans at 1M rows).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from typing import Any

import asyncpg

from core.context import AppContext


@dataclass(frozen=True)
class Report:
    name: str
    view: str
    columns: tuple[str, ...]
    # None: the view's own ORDER BY is the order. The outer query then has no sort of its own, so
    # PostgreSQL plans the view for LIMIT's few rows and reads an ordered index instead of sorting
    # every match (set_subquery_pathlist passes tuple_fraction down only without an outer sort).
    order_by: str | None
    # the column `--since` compares with: a UTC day, or the creation timestamp
    since_column: str | None
    empty_message: str


FUNNEL = Report(
    name="funnel",
    view="capi_funnel_daily",
    columns=(
        "day", "direction_id", "pixel_id", "event_level", "event_name",
        "success", "error", "skipped", "pending", "total",
    ),
    order_by="day, direction_id, pixel_id, event_level, event_name",
    since_column="day",
    empty_message="no events yet",
)

READINESS = Report(
    name="readiness",
    view="capi_optimization_readiness",
    columns=(
        "direction_id", "pixel_id", "event_level", "event_name", "successes_7d", "threshold", "ready",
        "optimise_for_event", "recommendation",
    ),
    order_by="direction_id, event_level",
    since_column=None,  # always the last 7 days: that is what Meta's learning phase counts
    empty_message="no directions configured yet (nothing to optimise)",
)

ERRORS = Report(
    name="errors",
    view="capi_errors_recent",
    columns=(
        "id", "created_at", "direction_id", "pixel_id", "event_level", "event_name", "attempts",
        "meta_code", "meta_subcode", "error", "hint",
    ),
    order_by=None,  # the view's: created_at DESC, id DESC
    since_column="created_at",
    empty_message="no events yet in error",
)

REPORTS = {r.name: r for r in (FUNNEL, READINESS, ERRORS)}

# the dashboard's Errors page: the same view with the dialog (a link to its page) and the source
ERRORS_AUDIT = Report(
    name="errors",
    view="capi_errors_recent",
    columns=(*ERRORS.columns, "source", "dialog_analysis_id"),
    order_by=None,
    since_column="created_at",
    empty_message=ERRORS.empty_message,
)


@dataclass(frozen=True)
class Filters:
    direction: str | None = None
    since: date | None = None
    limit: int | None = None
    directions: tuple[str, ...] | None = None  # only these (a dashboard viewer's account); None: all


def build(report: Report, filters: Filters) -> tuple[str, list[Any]]:
    """The SQL of `report` restricted by `filters`, with its bound arguments."""
    conditions: list[str] = []
    args: list[Any] = []
    if filters.direction is not None:
        args.append(filters.direction)
        conditions.append(f"direction_id = ${len(args)}")
    if filters.directions is not None:
        args.append(list(filters.directions))
        conditions.append(f"direction_id = ANY(${len(args)}::text[])")
    if filters.since is not None:
        if report.since_column is None:
            raise ValueError(f"the {report.name} report does not take a start date")
        if report.since_column == "day":
            args.append(filters.since)
        else:
            args.append(datetime.combine(filters.since, time.min, tzinfo=UTC))
        conditions.append(f"{report.since_column} >= ${len(args)}")
    sql = f"SELECT {', '.join(report.columns)} FROM {report.view}"
    if conditions:
        sql += " WHERE " + " AND ".join(conditions)
    if report.order_by:
        sql += f" ORDER BY {report.order_by}"
    if filters.limit is not None:
        args.append(filters.limit)
        sql += f" LIMIT ${len(args)}"
    return sql, args


async def fetch(db: asyncpg.Pool | asyncpg.Connection, report: Report, filters: Filters) -> list[dict[str, Any]]:
    """Run the report; rows as dicts keyed by `report.columns`, in that order."""
    sql, args = build(report, filters)
    rows = await db.fetch(sql, *args)
    return [dict(r.items()) for r in rows]


# injection marks (qualification.verdict): dialogs whose client wrote to the analysing model
SUSPICIOUS = Report(
    name="suspicious",
    view="qualification_suspicious",
    columns=("dialog_id", "flagged_at", "direction_id", "instance_name", "message_id", "level", "analysis_detail"),
    order_by=None,  # the view's: flagged_at DESC
    since_column="flagged_at",
    empty_message="no dialog has a client message addressed to the model",
)
REPORTS[SUSPICIOUS.name] = SUSPICIOUS

# levels 2-3 held for review (qualification.verdict.hold_unsure): below the direction's min_confidence
HELD = Report(
    name="held",
    view="qualification_held",
    columns=("dialog_id", "held_at", "direction_id", "instance_name", "held_level", "confidence", "level",
             "analysis_detail"),
    order_by=None,  # the view's: held_at DESC
    since_column="held_at",
    empty_message="no level is held for review",
)
REPORTS[HELD.name] = HELD

# the dashboard's Held for review page: the period's waiting levels of one account (None: every
# account), newest first; through the partial index dialog_analysis_held (held_at, held rows only)
_HELD_PAGE_SQL = """
SELECT dialog_id, held_at, direction_id, instance_name, held_level, confidence, level
FROM qualification_held
WHERE held_at >= $1 AND ($2::text IS NULL OR account_id = $2) AND ($3::text IS NULL OR direction_id = $3)
LIMIT $4"""


async def held_for_review(db: asyncpg.Pool | asyncpg.Connection, since: datetime, account: str | None,
                          direction: str | None, limit: int) -> list[dict[str, Any]]:
    """Levels 2-3 held since `since` and still waiting (no level as high recorded since), newest first."""
    return [dict(r) for r in await db.fetch(_HELD_PAGE_SQL, since, account, direction, limit)]

# per UTC day, direction and level: decisions by status, from capi_funnel_daily (which reads the
# rollup: a few rows per direction and day, however long the log)
_FUNNEL_DAYS_SQL = """
SELECT day, direction_id, event_level, sum(success)::bigint AS success, sum(error)::bigint AS error,
       sum(skipped)::bigint AS skipped, sum(pending)::bigint AS pending, sum(total)::bigint AS total
FROM capi_funnel_daily
WHERE day >= $1 {directions}
GROUP BY 1, 2, 3
ORDER BY 1 DESC, 2, 3"""


async def funnel_days(db: asyncpg.Pool | asyncpg.Connection, since: date,
                      directions: tuple[str, ...] | None) -> list[dict[str, Any]]:
    """`directions` None: every direction, and the decisions without one."""
    if directions is None:
        rows = await db.fetch(_FUNNEL_DAYS_SQL.format(directions=""), since)
    else:
        rows = await db.fetch(_FUNNEL_DAYS_SQL.format(directions="AND direction_id = ANY($2::text[])"),
                              since, list(directions))
    return [dict(r) for r in rows]


# Fold the triggers' delta rows into the merged row of each group (migration 017). One merger at a
# time (a transaction-level advisory lock; the others skip): only mergers write merged rows, so
# writers of capi_events_log never wait on it.
_MERGE_SQL = """
WITH gone AS (
    DELETE FROM capi_funnel_rollup WHERE NOT merged
    RETURNING day, direction_id, pixel_id, event_level, event_name, status, n
)
INSERT INTO capi_funnel_rollup AS r (day, direction_id, pixel_id, event_level, event_name, status, n, merged)
SELECT day, direction_id, pixel_id, event_level, event_name, status, sum(n), true
FROM gone GROUP BY 1, 2, 3, 4, 5, 6
ON CONFLICT (day, direction_id, pixel_id, event_level, event_name, status) WHERE merged
DO UPDATE SET n = r.n + EXCLUDED.n"""
_MERGE_LOCK = 0x51B0_F0E1  # any constant of our own for pg_try_advisory_xact_lock
MERGE_SECONDS = 60.0


async def merge_funnel_rollup(pool: asyncpg.Pool) -> int | None:
    """Groups written (merged rows made or changed); None: another process is merging."""
    async with pool.acquire() as conn, conn.transaction():
        if not await conn.fetchval("SELECT pg_try_advisory_xact_lock($1)", _MERGE_LOCK):
            return None
        status = await conn.execute(_MERGE_SQL)
    return int(status.split()[-1])


async def merge_loop(ctx: AppContext) -> float:
    """A worker loop step: merge, then wait a minute (one short transaction a minute when idle)."""
    await merge_funnel_rollup(ctx.pool)
    return MERGE_SECONDS
