"""Redelivery and scale-out, long version: `python -m scripts.proof.scaleout --dialogs 200 --copies 3`.

Two `qualibot serve --no-workers` and two `qualibot worker` processes on one database; every
webhook posted `--copies` times at once over both HTTP processes (tests/proof/scaleout.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.scaleout import ScaleParams, run_scaleout


def run(args: argparse.Namespace, workdir: Path) -> Report:
    params = ScaleParams(dialogs=args.dialogs, per_dialog=args.per_dialog, copies=args.copies,
                         rate=args.rate or None, settle_timeout=args.settle_timeout)
    return asyncio.run(run_scaleout(params, workdir))


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--dialogs", type=int, default=200)
    p.add_argument("--per-dialog", type=int, default=10)
    p.add_argument("--copies", type=int, default=3)
    p.add_argument("--rate", type=float, default=100.0, help="distinct messages per second (0: unthrottled)")
    p.add_argument("--settle-timeout", type=float, default=300.0)
    sys.exit(main(run, p.parse_args()))
