"""`qualibot doctor [--online]`: check every direction's configuration, one line per finding.

    SEVERITY  DIRECTION  what was found

ERROR means events will not reach Meta as configured; WARN means they will, but not as intended;
OK lines say what was checked. Exit code 1 when there is any ERROR (an empty deployment is one:
it sends nothing), 0 with warnings only. Tokens are always masked.
"""

from __future__ import annotations

import argparse
import sys
from typing import Any

import asyncpg

from bot.cloud.numbers import all_numbers
from bot.drift import referral_shares
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from qualibot.cli import CliError
from qualibot.doctor import (
    Finding,
    check_all,
    check_drift,
    check_held,
    check_suspicious,
    check_undirected,
    cross_account_findings,
    load,
    load_intake,
    load_undirected,
)
from qualibot.doctor_online import check_cloud, check_evolution, check_online, load_instances
from qualification.dialogs import count_held, count_suspicious


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("doctor")
    p.add_argument("--online", action="store_true",
                   help="also ask the CRM, Meta, Evolution and each WhatsApp Cloud number whether the tokens work")
    p.add_argument("--timeout", type=float, default=5.0, metavar="SECONDS",
                   help="per request with --online (default 5)")
    p.set_defaults(func=run)


async def run(args: argparse.Namespace, settings: Settings) -> int:
    if args.timeout <= 0:
        raise CliError(f"--timeout: must be positive, not {args.timeout:g}", code=2)
    try:
        async with open_pool(settings, max_size=1) as pool:
            dirs, not_analysed = await load(pool)
            intake = await load_intake(pool)
            crossed = await cross_account_findings(pool)
            instances = await load_instances(pool) if args.online else []
            numbers = await all_numbers(pool) if args.online else []
            undirected = await load_undirected(pool)
            shares = await referral_shares(pool, settings.click_id_drift_chats)
            suspicious = await count_suspicious(pool)
            held = await count_held(pool)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    except asyncpg.UndefinedTableError:
        raise CliError("the database has no qualibot tables: run `qualibot migrate` first") from None
    findings = crossed + check_all(dirs, settings, not_analysed, intake)
    findings += check_undirected(undirected) + check_drift(shares, settings.click_id_drift_chats)
    findings += check_suspicious(suspicious) + check_held(held)
    if args.online and dirs:
        findings += await check_online(dirs, settings, args.timeout)
    if instances:
        findings += await check_evolution(instances, args.timeout)
    if numbers:
        findings += await check_cloud(numbers, settings, args.timeout)
    sys.stdout.write(render(findings))
    return 1 if any(f.severity == "ERROR" for f in findings) else 0


def render(findings: list[Finding]) -> str:
    """Findings grouped by direction (deployment-wide first), then a summary line."""
    order = {f.direction: i for i, f in reversed(list(enumerate(findings)))}
    ranked = sorted(findings, key=lambda f: (f.direction is not None, order[f.direction]))
    width = max(len(f.direction or "-") for f in ranked)
    lines = [f"{f.severity:<5}  {(f.direction or '-'):<{width}}  {f.message}" for f in ranked]
    errors = sum(f.severity == "ERROR" for f in findings)
    warnings = sum(f.severity == "WARN" for f in findings)
    directions = len({f.direction for f in findings if f.direction is not None})
    lines.append(f"doctor: {errors} error(s), {warnings} warning(s) in {directions} direction(s)")
    return "\n".join(lines) + "\n"
