"""`qualibot` command line. Each command lives in a `qualibot.cmd_*` module exposing
`add_parser(subparsers)`; the parser it adds sets `func=async (args, settings) -> exit code`.

Only the module of the command being run is imported: the others pull in aiohttp, openai and the
whole service (over a second of imports), which `--help` and `report` should not pay. The
one-line help of every command therefore lives here, in `COMMANDS`, not in its module."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import sys
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import Permanent

if TYPE_CHECKING:  # imported when a command runs: `--help` needs neither pydantic nor the database
    from core.settings import Settings

# command → (the module that adds its parser, its line in `qualibot --help`)
COMMANDS: dict[str, tuple[str, str]] = {
    "migrate": ("qualibot.cmd_migrate", "apply pending database migrations"),
    "config": ("qualibot.cmd_config", "apply or export tenants as YAML"),
    "serve": ("qualibot.cmd_serve", "serve HTTP (and run workers)"),
    "worker": ("qualibot.cmd_serve", "run job workers only"),
    "prompt": ("qualibot.cmd_prompt", "qualification prompts of directions"),
    "report": ("qualibot.cmd_report", "funnel and audit reports from capi_events_log"),
    "doctor": ("qualibot.cmd_doctor", "check tokens, datasets, event names and CRM settings of every direction"),
    "demo": ("qualibot.cmd_demo", "play a demo dialog against local stand-ins"),
    "capi": ("qualibot.cmd_capi", "CAPI outbox operations"),
    "bot": ("qualibot.cmd_bot", "the WhatsApp chatbot in one chat"),
    "privacy": ("qualibot.cmd_privacy", "one person's data: export it (subject access) or erase it (LGPD, GDPR)"),
    "viewer": ("qualibot.cmd_viewer", "dashboard access: login links per account"),
}

Command = Callable[[argparse.Namespace, "Settings"], Coroutine[Any, Any, int]]


class CliError(Permanent):
    """A user-facing failure: printed as one line, exit code `exit_code`."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = code


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser, with the full arguments of the command named in `argv` (every command's when None)."""
    parser = argparse.ArgumentParser(
        prog="qualibot", description="WhatsApp and CRM lead qualification reported to Meta's Conversions API."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    if argv is None:
        names = list(COMMANDS)
    else:  # the first word that is not an option names the command (none for `--help`)
        names = [a for a in argv if not a.startswith("-")][:1]
    for module in dict.fromkeys(COMMANDS[name][0] for name in names if name in COMMANDS):
        importlib.import_module(module).add_parser(_Commands(sub))
    for name, (_, text) in COMMANDS.items():
        if name not in sub.choices:  # listed, and parsed no further: a command not run needs no arguments
            sub.add_parser(name, help=text)
    return parser


class _Commands:
    """The subparsers as a command module sees them: each command gets its line from `COMMANDS`."""

    def __init__(self, sub: Any) -> None:
        self._sub = sub

    def add_parser(self, name: str, **kwargs: Any) -> argparse.ArgumentParser:
        parser: argparse.ArgumentParser = self._sub.add_parser(name, help=COMMANDS[name][1], **kwargs)
        return parser


def load_settings() -> Settings:
    from pydantic import ValidationError

    from core.settings import Settings

    try:
        return Settings()
    except ValidationError as exc:
        lines = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        raise CliError("invalid environment: " + "; ".join(lines), code=2) from None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser(argv).parse_args(argv)  # unknown arguments: argparse exits 2 with usage
    from asyncpg import UndefinedTableError

    from core.logging import configure_logging
    from qualibot.secret_values import register_settings_secrets

    try:
        settings = load_settings()
        configure_logging(settings.log_level)
        register_settings_secrets(settings)  # serve and worker add the tenants' secrets from the database
        func: Command = args.func
        return asyncio.run(func(args, settings))
    except CliError as exc:
        print(f"qualibot: {exc}", file=sys.stderr)
        return exc.exit_code
    except UndefinedTableError as exc:  # a database this version has not migrated yet
        print(f"qualibot: the database lacks a table this command needs ({exc}): run `qualibot migrate`",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


def run_main() -> Any:  # pragma: no cover - console entry
    sys.exit(main())
