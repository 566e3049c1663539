"""`qualibot capi retry`: resend failed or skipped events once their cause is fixed."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime
from typing import Any

from capi.retry import RetryCounts, candidates, retry_rows
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from crm.jobs import schedule_sync
from qualibot.cli import CliError
from qualification.door import dialog_contact


def _since(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--since: {value!r} is not a date (YYYY-MM-DD)") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("capi")
    csub = p.add_subparsers(dest="capi_command", required=True, metavar="ACTION")
    r = csub.add_parser("retry", help="re-evaluate error/skipped events and queue what can now be sent")
    r.add_argument("--status", choices=["error", "skipped"], action="append",
                   help="which rows (repeatable; default both)")
    r.add_argument("--direction", help="only this direction id")
    r.add_argument("--since", type=_since, help="only rows created on or after this date (YYYY-MM-DD)")
    r.add_argument("--dry-run", action="store_true", help="show what would happen, change nothing")
    r.set_defaults(func=run_retry)


class _Progress:
    """A one-line bar on a terminal; nothing otherwise (the summary has the counts)."""

    def __init__(self, total: int) -> None:
        self.total = total
        self.tty = sys.stderr.isatty()

    def __call__(self, done: int) -> None:
        if self.tty and self.total:
            width = 30
            filled = width * done // self.total
            sys.stderr.write(f"\r[{'#' * filled}{'.' * (width - filled)}] {done}/{self.total}")
            if done == self.total:
                sys.stderr.write("\n")
            sys.stderr.flush()


async def run_retry(args: argparse.Namespace, settings: Settings) -> int:
    statuses = args.status or ["error", "skipped"]
    try:
        async with open_pool(settings, max_size=2) as pool:
            ids = await candidates(pool, statuses, args.direction, args.since)
            if not ids:
                print(f"nothing to retry: no {' or '.join(statuses)} rows match")
                return 0
            counts = await retry_rows(pool, ids, contacts=dialog_contact, dry_run=args.dry_run,
                                      progress=_Progress(len(ids)))
            relinked = 0 if args.dry_run else await _relink(pool, counts.unlinked, settings)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}") from None
    _summary(counts, relinked, len(ids), args.dry_run)
    return 0


async def _relink(pool: Any, entities: list[str], settings: Settings) -> int:
    """Rows without a dialog come from CRM entities that had no WhatsApp lead: read them again."""
    scheduled = 0
    for entity in sorted(set(entities)):
        head, entity_type, entity_id = [*entity.rsplit(":", 2), "", "", ""][:3]
        connection_id = head.split(":", 1)[1] if ":" in head else ""
        if connection_id and entity_type and entity_id:
            await schedule_sync(pool, connection_id, entity_type, entity_id, delay=0)
            scheduled += 1
    return scheduled


def _summary(c: RetryCounts, relinked: int, total: int, dry_run: bool) -> None:
    verb = "would queue" if dry_run else "queued"
    print(f"{total} row(s) examined{' (dry run: nothing changed)' if dry_run else ''}")
    print(f"  {verb} for sending:      {c.requeued}")
    print(f"  still skipped (cause remains): {c.still_skipped}")
    print(f"  too old for Meta (>7 days): {c.expired}")
    if c.possibly_delivered:
        print(f"  left alone, Meta may have counted them (partial acknowledgement): {c.possibly_delivered}")
    if c.unlinked:
        what = "would re-read" if dry_run else f"re-read scheduled for {relinked}"
        print(f"  CRM entities without a WhatsApp dialog: {len(c.unlinked)} ({what} from the CRM)")
    if c.busy:
        print(f"  busy (being sent or retried right now): {c.busy}")
