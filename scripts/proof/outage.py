"""Meta outage, long version: `python -m scripts.proof.outage --dialogs 200 --outage-seconds 60`.

Meta (the fake Graph API) answers 503 or hangs past our timeout for the outage; then one request
is accepted but answered late (the at-least-once window). Reports the requests made during the
outage against the backoff bound (tests/proof/outage.py)."""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.outage import OutageParams, run_outage


def run(args: argparse.Namespace, workdir: Path) -> Report:
    params = OutageParams(dialogs=args.dialogs, per_dialog=args.per_dialog, outage_seconds=args.outage_seconds,
                          mode=args.mode, late_dialogs=args.late_dialogs, settle_timeout=args.settle_timeout)
    return asyncio.run(run_outage(params, workdir))


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--dialogs", type=int, default=200)
    p.add_argument("--per-dialog", type=int, default=4)
    p.add_argument("--outage-seconds", type=float, default=60.0)
    p.add_argument("--mode", choices=["503", "timeout", "mixed"], default="mixed")
    p.add_argument("--late-dialogs", type=int, default=30)
    p.add_argument("--settle-timeout", type=float, default=180.0)
    sys.exit(main(run, p.parse_args()))
