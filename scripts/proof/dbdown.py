"""Database down, long version: `python -m scripts.proof.dbdown --dialogs 200 --down-seconds 20`.

A private PostgreSQL (pgserver's binaries, a temporary data directory; never the machine's
server) is stopped under load and started again (tests/proof/dbdown.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.dbdown import DbDownParams, run_dbdown


def run(args: argparse.Namespace, workdir: Path) -> Report:
    params = DbDownParams(dialogs=args.dialogs, per_dialog=args.per_dialog, rate=args.rate or None,
                          down_seconds=args.down_seconds, stop_mode=args.stop_mode,
                          settle_timeout=args.settle_timeout)
    return asyncio.run(run_dbdown(params, workdir))


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--dialogs", type=int, default=200)
    p.add_argument("--per-dialog", type=int, default=10)
    p.add_argument("--rate", type=float, default=100.0, help="messages per second (0: unthrottled)")
    p.add_argument("--down-seconds", type=float, default=20.0)
    p.add_argument("--stop-mode", choices=["fast", "immediate"], default="fast",
                   help="pg_ctl stop mode: fast (clean) or immediate (a crash of PostgreSQL)")
    p.add_argument("--settle-timeout", type=float, default=300.0)
    sys.exit(main(run, p.parse_args()))
