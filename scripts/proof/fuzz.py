"""Fuzzing, long version: `python -m scripts.proof.fuzz --cases 5000 [--seed N]`.

Hypothesis-generated and mutated fixture bodies to every webhook route of the app on a real
socket; every 5xx, every 4xx that wrote a row and every 4xx without a JSON error is a problem,
reported with its body (tests/proof/fuzzing.py)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from scripts.proof.common import main, parser
from tests.proof.checks import Report
from tests.proof.fuzzing import FuzzParams, run_fuzz


def run(args: argparse.Namespace, workdir: Path) -> Report:
    return run_fuzz(FuzzParams(cases=args.cases, seed=args.seed), workdir)


if __name__ == "__main__":
    p = parser(__doc__ or "")
    p.add_argument("--cases", type=int, default=5000)
    p.add_argument("--seed", type=int, default=None, help="derandomize (default: a random run)")
    sys.exit(main(run, p.parse_args()))
