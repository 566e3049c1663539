"""`qualibot report funnel | readiness | errors | suspicious | held | ads | window | capture`: the
audit views and the dashboard's per-ad analytics (`qualibot.analytics`), for a terminal or a script.

`--format table` (default) is for people; `json` (a list of objects) and `csv` (a header row, then
one row per line) are for scripts, and stay well-formed when there is nothing to show (`[]`, the
header alone). Exit codes: 0 shown (even if empty), 1 database unavailable, 2 bad arguments.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from datetime import UTC, date, datetime, time, timedelta
from typing import TYPE_CHECKING, Any, TextIO

import asyncpg

from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from qualibot.cli import CliError
from qualibot.reports import ERRORS, REPORTS, Filters, Report, fetch

if TYPE_CHECKING:
    from qualibot.analytics import Analytics

ERRORS_DEFAULT_LIMIT = 100
ANALYTICS_DEFAULT_DAYS = 30  # ads, window, capture without --since: the dashboard's default period
ANALYTICS = ("ads", "window", "capture")
CELL_WIDTH = 100  # table cells longer than this are cut; json and csv keep everything


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "report", description="funnel: decisions per direction, dataset, UTC day and event; readiness: successes "
        "in the last 7 days per level and the event to optimise for; errors: the newest failed sends; "
        "suspicious: dialogs whose client wrote to the analysing model; held: levels 2-3 held for review (low "
        "confidence); ads: chats, levels, rates and times per ad; window: levels reached more than 7 days "
        "after the ad click (Meta does not count them); capture: per WhatsApp instance and day, the share of "
        "new chats with a click id.",
    )
    p.add_argument("report", choices=[*REPORTS, *ANALYTICS], help="which report")
    p.add_argument("--direction", metavar="ID", help="only this direction")
    p.add_argument("--account", metavar="ID", help="ads, window, capture: only this account")
    p.add_argument("--since", metavar="DATE", help="only events created on or after DATE (YYYY-MM-DD, UTC)")
    p.add_argument("--format", choices=("table", "json", "csv"), default="table", dest="fmt")
    p.add_argument("--limit", type=int, metavar="N",
                   help=f"at most N rows (errors: {ERRORS_DEFAULT_LIMIT} unless given)")
    p.set_defaults(func=run)


def parse_since(text: str | None) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise CliError(f"--since: {text!r} is not a date; use YYYY-MM-DD", code=2) from None


def filters_from(args: argparse.Namespace, report: Report) -> Filters:
    since = parse_since(args.since)
    if since is not None and report.since_column is None:
        raise CliError(f"--since does not apply to `report {report.name}`: it always counts the last 7 days",
                       code=2)
    limit = args.limit
    if limit is not None and limit < 1:
        raise CliError(f"--limit: must be at least 1, not {limit}", code=2)
    if limit is None and report is ERRORS:
        limit = ERRORS_DEFAULT_LIMIT
    return Filters(direction=args.direction, since=since, limit=limit)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.report in ANALYTICS:
        return await run_analytics(args, settings)
    if args.account is not None:
        raise CliError(f"--account does not apply to `report {args.report}`", code=2)
    report = REPORTS[args.report]
    filters = filters_from(args, report)
    try:
        async with open_pool(settings, max_size=1) as pool:
            rows = await fetch(pool, report, filters)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    except asyncpg.UndefinedTableError:
        raise CliError(f"{report.view} does not exist: run `qualibot migrate` first") from None
    write(sys.stdout, report, filters, rows, args.fmt)
    return 0


async def run_analytics(args: argparse.Namespace, settings: Settings) -> int:
    from qualibot.analytics import ANALYTICS as QUERIES
    from qualibot.analytics import Scope

    report = QUERIES[args.report]
    since = parse_since(args.since) or datetime.now(UTC).date() - timedelta(days=ANALYTICS_DEFAULT_DAYS - 1)
    if args.direction is not None and report.name == "capture":
        raise CliError("--direction does not apply to `report capture`: it counts per WhatsApp instance", code=2)
    if args.limit is not None and args.limit < 1:
        raise CliError(f"--limit: must be at least 1, not {args.limit}", code=2)
    scope = Scope(since=datetime.combine(since, time.min, tzinfo=UTC), account=args.account, direction=args.direction)
    try:
        async with open_pool(settings, max_size=1) as pool:
            rows = await report.query(pool, scope)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    except asyncpg.UndefinedTableError:
        raise CliError("the analytics view does not exist: run `qualibot migrate` first") from None
    rows = rows[: args.limit] if args.limit is not None else rows
    filters = Filters(direction=args.direction, since=since)
    write(sys.stdout, report, filters, rows, args.fmt)
    if args.fmt == "table" and rows:
        sys.stdout.write(f"(chats created since {since.isoformat()} UTC"
                         f"{'' if args.since else f', the default last {ANALYTICS_DEFAULT_DAYS} days'})\n")
    return 0


def write(out: TextIO, report: Report | Analytics, filters: Filters, rows: list[dict[str, Any]], fmt: str) -> None:
    if fmt == "json":
        json.dump([{k: plain(v) for k, v in r.items()} for r in rows], out, ensure_ascii=False, indent=2)
        out.write("\n")
    elif fmt == "csv":
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(report.columns)
        writer.writerows([text(r[c]) for c in report.columns] for r in rows)
    elif rows:
        out.write(table(report.columns, rows))
    else:
        out.write(report.empty_message + describe(filters) + "\n")


def describe(filters: Filters) -> str:
    parts = []
    if filters.direction is not None:
        parts.append(f"direction {filters.direction}")
    if filters.since is not None:
        parts.append(f"since {filters.since.isoformat()}")
    return f" ({', '.join(parts)})" if parts else ""


def plain(value: Any) -> Any:
    """A JSON-ready value: dates and times as ISO 8601 (times in UTC)."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    if isinstance(value, date):
        return value.isoformat()
    return value


def text(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(plain(value))


def table(columns: tuple[str, ...], rows: list[dict[str, Any]]) -> str:
    cells = [[cut(text(r[c])) for c in columns] for r in rows]
    widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
    numeric = [all(isinstance(r[c], int) and not isinstance(r[c], bool) for r in rows) for c in columns]

    def line(values: list[str]) -> str:
        padded = [v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric, strict=True)]
        return "  ".join(padded).rstrip() + "\n"

    return line(list(columns)) + line(["-" * w for w in widths]) + "".join(line(row) for row in cells)


def cut(value: str) -> str:
    value = " ".join(value.split())  # one line per row, whatever Meta's message holds
    return value if len(value) <= CELL_WIDTH else value[: CELL_WIDTH - 1] + "…"
