"""The command line loads only the command it runs (issue 18.6): `--help` and `report` start fast.

Speed itself is measured by `bench/cli_startup.py`; here, what a slow start comes from: importing
the service (aiohttp's server, the OpenAI SDK) for a command that does not use it.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from pathlib import Path

import pytest

from qualibot.cli import COMMANDS, build_parser
from tests.dbsetup import fresh_database

PROBE = """
import sys
from qualibot.cli import main
try:
    main({argv!r})
except SystemExit:
    pass
print("loaded:" + ",".join(sorted(m for m in ("openai", "aiohttp.web", "qualibot.app", "httpx") if m in sys.modules)))
"""


def heavy_imports(argv: list[str]) -> str:
    done = subprocess.run([sys.executable, "-c", PROBE.format(argv=argv)], capture_output=True, text=True,
                          check=True)
    return done.stdout.rsplit("loaded:", 1)[1].strip()


@pytest.mark.parametrize("argv", [["--help"], ["report", "--help"], ["migrate", "--help"], ["config", "--help"]])
def test_help_and_report_do_not_load_the_service(argv: list[str]) -> None:
    assert heavy_imports(argv) == ""


def test_help_lists_every_command_with_its_line() -> None:
    done = subprocess.run([sys.executable, "-m", "qualibot", "--help"], capture_output=True, text=True, check=True)
    for name, (_, text) in COMMANDS.items():
        assert name in done.stdout and text.split()[0] in done.stdout


def test_each_command_parses_its_own_arguments() -> None:
    args = build_parser(["report", "readiness", "--format", "json"]).parse_args(["report", "readiness", "--format",
                                                                                  "json"])
    assert (args.command, args.report, args.fmt) == ("report", "readiness", "json")
    assert build_parser(["worker"]).parse_args(["worker"]).command == "worker"  # cmd_serve adds serve and worker
    with pytest.raises(SystemExit):  # an unknown command: argparse's usage error, exit 2
        build_parser(["nosuch"]).parse_args(["nosuch"])


def test_every_listed_command_has_a_parser_in_its_module() -> None:
    parser = build_parser()  # every module loaded
    sub = next(a for a in parser._actions if a.dest == "command")
    assert set(sub.choices) == set(COMMANDS)  # type: ignore[arg-type]


@pytest.mark.parametrize("argv", [["viewer", "list"], ["report", "funnel"]])
async def test_a_database_not_yet_migrated_is_named_not_a_traceback(argv: list[str], tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as dsn:  # an empty database: `qualibot migrate` never ran
        env = {**os.environ, "DATABASE_URL": dsn, "QUALIBOT_DATA_DIR": str(tmp_path)}
        done = await asyncio.to_thread(subprocess.run, [sys.executable, "-m", "qualibot", *argv],
                                       capture_output=True, text=True, env=env)
    assert done.returncode == 1
    assert "run `qualibot migrate`" in done.stderr and "Traceback" not in done.stderr
