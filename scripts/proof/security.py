"""Security: `python -m scripts.proof.security [--scan DIR]`.

Every route with missing or wrong credentials and oversized bodies against `qualibot serve`,
then the scan of its logs (and of every `*.log` under `--scan`, e.g. the work directories of the
other proof scripts) for tokens, secrets and full phone numbers (tests/proof/security.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.security import run_security


def run(args: argparse.Namespace, workdir: Path) -> Report:
    others = [p for d in args.scan for p in d.rglob("*.log")]
    return asyncio.run(run_security(workdir, others))


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--scan", type=Path, action="append", default=[], help="also scan the *.log files under DIR")
    sys.exit(main(run, p.parse_args()))
