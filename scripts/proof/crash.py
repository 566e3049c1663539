"""Crash, long version: `python -m scripts.proof.crash --dialogs 200 --per-dialog 10 --kills graph,random,random`.

Plays the dialogs through `qualibot serve` (a subprocess), SIGKILLs it at evenly spread points
(`graph`: while Meta holds a request it accepted; `random`: wherever it is), restarts it, and
checks every message, level and Meta delivery (tests/proof/crash.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.crash import CrashParams, run_crash


def run(args: argparse.Namespace, workdir: Path) -> Report:
    params = CrashParams(dialogs=args.dialogs, per_dialog=args.per_dialog, kills=tuple(args.kills.split(",")),
                         rate=args.rate or None, settle_timeout=args.settle_timeout)
    return asyncio.run(run_crash(params, workdir))


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--dialogs", type=int, default=200)
    p.add_argument("--per-dialog", type=int, default=10, help="client messages per dialog (default 10)")
    p.add_argument("--kills", default="graph,random,random", help="one SIGKILL per entry: graph or random")
    p.add_argument("--rate", type=float, default=100.0, help="messages per second (0: as fast as possible)")
    p.add_argument("--settle-timeout", type=float, default=300.0)
    sys.exit(main(run, p.parse_args()))
