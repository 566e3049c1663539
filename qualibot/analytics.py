"""Per-ad analytics over the `dialog_ads` view (migration 017: a dialog with its lead's ad), shared by
the dashboard's Ads and Attribution window pages and `qualibot report ads | window | capture`.

Every query takes a period start (dialogs or chats created since) and an account (None: every
account), so it reads the period through `dialog_analysis_account_created` / `dialog_analysis_created`
instead of the whole table. Times are medians in seconds.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from qualification.leads import capture_daily

# Meta counts a business-messaging conversion within 7 days of the ad click
ATTRIBUTION_DAYS = 7

ADS_COLUMNS = (
    "ad_id", "ad_title", "direction_id", "new_chats", "level1", "level2", "level3",
    "level1_rate", "level2_rate", "level3_rate",
    "median_seconds_to_level1", "median_seconds_to_level2", "median_seconds_to_level3", "events_sent",
)
WINDOW_COLUMNS = (
    "direction_id", "ad_id", "ad_title", "clicked_chats",
    "level1", "level1_late", "level2", "level2_late", "level3", "level3_late",
    "median_click_seconds_to_level1", "median_click_seconds_to_level2", "median_click_seconds_to_level3",
)
CAPTURE_COLUMNS = ("day", "instance_name", "new_chats", "with_click_id", "click_id_share")


def _median(column: str, start: str) -> str:
    return f"round(percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM {column} - {start})))::bigint"


def _rate(count: str) -> str:
    return f"round(100.0 * {count} / count(*), 1)::float8"


_LEVELS = (("1", "interest_reached_at"), ("2", "qualified_reached_at"), ("3", "scheduled_reached_at"))

_ADS_SQL = f"""
SELECT ad_id, max(ad_title) AS ad_title, direction_id, count(*) AS new_chats,
       {", ".join(f"count({c}) AS level{n}" for n, c in _LEVELS)},
       {", ".join(f"{_rate(f'count({c})')} AS level{n}_rate" for n, c in _LEVELS)},
       {", ".join(f"{_median(c, 'created_at')} AS median_seconds_to_level{n}" for n, c in _LEVELS)},
       sum(events_sent) AS events_sent
FROM dialog_ads
WHERE created_at >= $1 {{where}}
GROUP BY ad_id, direction_id
ORDER BY new_chats DESC, ad_id NULLS LAST, direction_id NULLS LAST"""

_WINDOW_SQL = f"""
SELECT direction_id, ad_id, max(ad_title) AS ad_title, count(*) AS clicked_chats,
       {", ".join(f"count({c}) AS level{n}, count(*) FILTER (WHERE {c} > clicked_at + "
                  f"make_interval(days => {ATTRIBUTION_DAYS})) AS level{n}_late" for n, c in _LEVELS)},
       {", ".join(f"{_median(c, 'clicked_at')} AS median_click_seconds_to_level{n}" for n, c in _LEVELS)}
FROM dialog_ads
WHERE created_at >= $1 AND clicked_at IS NOT NULL {{where}}
GROUP BY direction_id, ad_id
ORDER BY direction_id NULLS LAST, clicked_chats DESC, ad_id"""


# the Dialogs page: the period's newest dialogs, of one ad (or of no ad) when asked
_DIALOGS_SQL = """
SELECT dialog_id, created_at, direction_id, instance_name, contact_phone, ad_id, ad_title, level, events_sent
FROM dialog_ads
WHERE created_at >= $1 {where}
ORDER BY created_at DESC, dialog_id DESC
LIMIT {limit}"""
NO_AD = "none"  # the `ad` filter for chats that came from no ad


@dataclass(frozen=True)
class Scope:
    since: datetime
    account: str | None = None  # None: every account
    direction: str | None = None


# Ads and Window read every dialog of the period with its lead. With hash or merge joins allowed the
# planner reads all of `leads` to join them (its cost model prefers that until leads far outnumber the
# period's dialogs); looking each lead up by its primary key costs the same at 100 k leads and stays
# flat as leads grow, which the period's dialogs do not (bench/dashboard.py, bench/README.md).
# (No covering index: the ad's text columns are as long as the webhook sent, too long for a btree
# entry.) Without parallel workers, whose plans scan all of dialog_analysis
# in parallel instead of reading the period through its index (and a ~50 ms query gains nothing from
# them on a small machine). SET LOCAL: for this transaction only.
_LOOKUP_LEADS = ("SET LOCAL enable_hashjoin = off; SET LOCAL enable_mergejoin = off; "
                 "SET LOCAL max_parallel_workers_per_gather = 0")


async def _fetch(db: asyncpg.Pool | asyncpg.Connection, template: str, scope: Scope, *,
                 ad: str | None = None, limit: int | None = None, lookups: bool = False) -> list[dict[str, Any]]:
    args: list[Any] = [scope.since]
    where = []
    if ad == NO_AD:
        where.append("AND ad_id IS NULL")
    elif ad is not None:
        args.append(ad)
        where.append(f"AND ad_id = ${len(args)}")
    if scope.account is not None:
        args.append(scope.account)
        where.append(f"AND account_id = ${len(args)}")
    if scope.direction is not None:
        args.append(scope.direction)
        where.append(f"AND direction_id = ${len(args)}")
    if limit is not None:
        args.append(limit)
    sql = template.format(where=" ".join(where), limit=f"${len(args)}")
    if not lookups:
        return [dict(r) for r in await db.fetch(sql, *args)]
    async with _connection(db) as conn, conn.transaction():
        await conn.execute(_LOOKUP_LEADS)
        return [dict(r) for r in await conn.fetch(sql, *args)]


@asynccontextmanager
async def _connection(db: asyncpg.Pool | asyncpg.Connection) -> AsyncIterator[asyncpg.Connection]:
    if isinstance(db, asyncpg.Pool):
        async with db.acquire() as conn:
            yield conn
    else:
        yield db


async def ads(db: asyncpg.Pool | asyncpg.Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per ad and direction: new chats, levels reached, rates of new chats, median time from the first
    message to each level, events Meta accepted. Chats from no ad are the row whose ad_id is None."""
    return await _fetch(db, _ADS_SQL, scope, lookups=True)


async def window(db: asyncpg.Pool | asyncpg.Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per direction and ad, chats with a click: levels reached, those reached more than 7 days after
    the click (Meta will not attribute them), and the median click-to-level time."""
    return await _fetch(db, _WINDOW_SQL, scope, lookups=True)


async def dialogs(db: asyncpg.Pool | asyncpg.Connection, scope: Scope, ad: str | None, limit: int
                  ) -> list[dict[str, Any]]:
    """The period's newest `limit` dialogs, of ad `ad` (`NO_AD`: of no ad; None: of any)."""
    return await _fetch(db, _DIALOGS_SQL, scope, ad=ad, limit=limit)


async def capture(db: asyncpg.Pool | asyncpg.Connection, scope: Scope) -> list[dict[str, Any]]:
    """Per UTC day and WhatsApp instance: new chats and the share that arrived with a click id."""
    return await capture_daily(db, scope.since, scope.account)


@dataclass(frozen=True)
class Analytics:
    name: str
    columns: tuple[str, ...]
    query: Callable[[asyncpg.Pool | asyncpg.Connection, Scope], Awaitable[list[dict[str, Any]]]]
    empty_message: str


ANALYTICS = {
    a.name: a for a in (
        Analytics("ads", ADS_COLUMNS, ads, "no chats in the period"),
        Analytics("window", WINDOW_COLUMNS, window, "no chats with an ad click in the period"),
        Analytics("capture", CAPTURE_COLUMNS, capture, "no new chats in the period"),
    )
}
