"""`qualibot` command line. Each command lives in a `qualibot.cmd_*` module exposing
`add_parser(subparsers)`; the parser it adds sets `func=async (args, settings) -> exit code`."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from pydantic import ValidationError

from core.errors import Permanent
from core.logging import configure_logging
from core.settings import Settings
from qualibot.secret_values import register_settings_secrets

COMMAND_MODULES = [
    "qualibot.cmd_migrate",
    "qualibot.cmd_config",
    "qualibot.cmd_serve",
    "qualibot.cmd_prompt",
    "qualibot.cmd_report",
    "qualibot.cmd_doctor",
    "qualibot.cmd_demo",
    "qualibot.cmd_capi",
    "qualibot.cmd_bot",
    "qualibot.cmd_privacy",
    "qualibot.cmd_viewer",
]

Command = Callable[[argparse.Namespace, Settings], Coroutine[Any, Any, int]]


class CliError(Permanent):
    """A user-facing failure: printed as one line, exit code `exit_code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="qualibot", description="WhatsApp and CRM lead qualification reported to Meta's Conversions API."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).add_parser(sub)
    return parser


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise CliError("invalid environment: " + "; ".join(lines), code=2) from None


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)  # unknown arguments: argparse exits 2 with usage
    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        register_settings_secrets(settings)  # serve and worker add the tenants' secrets from the database
        func: Command = args.func
        return asyncio.run(func(args, settings))
    except CliError as exc:
        print(f"qualibot: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        return 130


def run_main() -> Any:  # pragma: no cover - console entry
    sys.exit(main())
