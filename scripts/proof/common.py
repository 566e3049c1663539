"""What every proof script shares: a work directory, the printed report, a JSON copy, the exit code."""

from __future__ import annotations

import argparse
import json
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path

from tests.proof.checks import Report


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--workdir", type=Path, default=None,
                   help="where the service logs go (default: a new temporary directory)")
    p.add_argument("--json", type=Path, default=None, help="also write the figures to this file")
    return p


def workdir(args: argparse.Namespace) -> Path:
    path: Path = args.workdir or Path(tempfile.mkdtemp(prefix="qualibot-proof-"))
    path.mkdir(parents=True, exist_ok=True)
    return path


def finish(args: argparse.Namespace, report: Report, where: Path) -> int:
    print(report.render())
    print(f"  (service logs in {where})")
    if args.json:
        args.json.write_text(json.dumps({"name": report.name, "figures": report.figures,
                                         "problems": report.problems}, indent=2, default=str))
    return 1 if report.problems else 0


def main(run: Callable[[argparse.Namespace, Path], Report], args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.WARNING)
    where = workdir(args)
    return finish(args, run(args, where), where)
