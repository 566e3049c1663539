"""`qualibot config apply FILE` and `qualibot config export`: tenants as code."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

import yaml

from core.db import UNAVAILABLE_ERRORS, open_pool
from core.settings import Settings
from qualibot.cli import CliError
from qualibot.tenants import ConfigError, parse_config
from qualibot.tenants_db import apply_config, export_config


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("config")
    csub = p.add_subparsers(dest="config_command", required=True, metavar="ACTION")
    ap = csub.add_parser("apply", help="validate FILE and write it to the database")
    ap.add_argument("file", type=Path)
    ap.set_defaults(func=run_apply)
    ex = csub.add_parser("export", help="print the tenants as YAML (secrets masked)")
    ex.add_argument("--show-secrets", action="store_true", help="print tokens and secrets in clear")
    ex.set_defaults(func=run_export)


async def run_apply(args: argparse.Namespace, settings: Settings) -> int:
    path: Path = args.file
    try:
        text = await asyncio.to_thread(path.read_text, encoding="utf-8")
    except OSError as exc:
        raise CliError(f"{path}: {exc.strerror}", code=2) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CliError(f"{path}: not valid YAML: {exc}", code=2) from None
    try:
        cfg = parse_config(data)
        async with open_pool(settings, max_size=2) as pool:
            changed = await apply_config(pool, cfg)  # refuses another account's objects: ConfigError
    except ConfigError as exc:
        for line in exc.problems:
            print(line, file=sys.stderr)
        print(f"qualibot: {path}: {len(exc.problems)} error(s); nothing was written", file=sys.stderr)
        return 2
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}") from None
    print(f"applied {path}: {changed} row(s) changed")
    return 0


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with open_pool(settings, max_size=2) as pool:
            data = await export_config(pool, show_secrets=args.show_secrets)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}") from None
    sys.stdout.write(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
    return 0
