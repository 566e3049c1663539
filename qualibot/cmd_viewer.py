"""`qualibot viewer create | revoke | list`: who may open the dashboard at /dashboard/.

`create` prints a one-time login link (valid 7 days); opening it sets a 30-day session cookie.
Exit codes: 0 done, 1 database unavailable or no such viewer, 2 bad arguments (an unknown account).
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from qualibot.cli import CliError

MAX_NAME = 200


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser(
        "viewer", description="A viewer sees one account's dashboard (or every account's, with --admin).")
    vsub = p.add_subparsers(dest="viewer_command", required=True, metavar="ACTION")
    c = vsub.add_parser("create", help="a new viewer; prints its one-time login link")
    who = c.add_mutually_exclusive_group(required=True)
    who.add_argument("--account", metavar="ID", help="the account this viewer sees")
    who.add_argument("--admin", action="store_true", help="a viewer of every account")
    c.add_argument("--name", metavar="N", help="who it is for (shown on the pages and in `viewer list`)")
    c.add_argument("--url", metavar="BASE",
                   help="the address people reach qualibot at (default: http://QUALIBOT_HOST:QUALIBOT_PORT)")
    c.set_defaults(func=create)
    r = vsub.add_parser("revoke", help="end a viewer's sessions and unused link")
    r.add_argument("viewer_id", type=int, metavar="ID", help="the viewer's id (see `viewer list`)")
    r.set_defaults(func=revoke)
    ls = vsub.add_parser("list", help="every viewer")
    ls.set_defaults(func=listing)


async def create(args: argparse.Namespace, settings: Settings) -> int:
    from qualibot.dashboard import viewers

    name = (args.name or (args.account and f"{args.account} viewer") or "admin").strip()
    if not name or len(name) > MAX_NAME:
        raise CliError(f"--name: 1 to {MAX_NAME} characters", code=2)
    try:
        async with open_pool(settings, max_size=1) as pool:
            viewer_id, token = await viewers.create(pool, None if args.admin else args.account, name)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    except viewers.NoSuchAccount:
        raise CliError(f"--account: no account {args.account!r} (see `qualibot config export`)", code=2) from None
    base = (args.url or f"http://{settings.host}:{settings.port}").rstrip("/")
    sys.stdout.write(f"viewer {viewer_id} ({name}); login link, valid once for "
                     f"{viewers.LOGIN_VALID.days} days:\n{base}/dashboard/login?token={token}\n")
    return 0


async def revoke(args: argparse.Namespace, settings: Settings) -> int:
    from qualibot.dashboard import viewers

    try:
        async with open_pool(settings, max_size=1) as pool:
            done = await viewers.revoke(pool, args.viewer_id)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    if not done:
        raise CliError(f"no active viewer {args.viewer_id}")
    sys.stdout.write(f"viewer {args.viewer_id} revoked: its sessions and link no longer work\n")
    return 0


async def listing(args: argparse.Namespace, settings: Settings) -> int:
    from qualibot.cmd_report import table
    from qualibot.dashboard import viewers

    try:
        async with open_pool(settings, max_size=1) as pool:
            rows = await viewers.listing(pool)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    if not rows:
        sys.stdout.write("no viewers yet: `qualibot viewer create --account ID`\n")
        return 0
    sys.stdout.write(table(("id", "account", "name", "created_at", "logged_in_at", "revoked_at", "link_unused"),
                           rows))
    return 0
