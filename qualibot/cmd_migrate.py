"""`qualibot migrate`: apply pending migrations (safe concurrently and repeatedly)."""

from __future__ import annotations

import argparse
from typing import Any

from core.db import UNAVAILABLE_ERRORS, open_pool
from core.migrate import MigrationError, migrate
from core.settings import Settings
from qualibot.cli import CliError


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("migrate")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with open_pool(settings, max_size=2) as pool, pool.acquire() as conn:
            applied = await migrate(conn)
    except MigrationError as exc:
        raise CliError(str(exc)) from None
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    print(f"applied {len(applied)} migration(s)" + (": " + ", ".join(applied) if applied else ""))
    return 0
