"""CLI start-up: how long `qualibot --help` and `qualibot report --help` take, before and after (issue 18.6).

Each command is run `--runs` times from the checkout's own `.venv` (alternating checkouts and
commands, so a busy moment of this shared machine falls on all of them alike); the median wall time
is printed, with the same for `python -c pass` from the same interpreter as the baseline: what any
Python program pays before its first import. Target: ≤ 0.3 s for both commands.

    .venv/bin/python bench/cli_startup.py [--runs 15] [--before-root DIR]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.idle import checkouts, parse_args  # noqa: E402

COMMANDS = {"python -c pass": None, "qualibot --help": ["--help"], "qualibot report --help": ["report", "--help"]}


def timed(root: Path, argv: list[str] | None) -> float:
    venv = root / ".venv" / "bin"
    command = [str(venv / "python"), "-c", "pass"] if argv is None else [str(venv / "qualibot"), *argv]
    started = time.perf_counter()
    subprocess.run(command, cwd=root, check=True, stdout=subprocess.DEVNULL)
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=15)
    args = parse_args(parser)
    trees = checkouts(args.before_root)
    times: dict[tuple[str, str], list[float]] = {}
    for _ in range(args.runs):
        for label, root in trees:
            for name, argv in COMMANDS.items():
                times.setdefault((label, name), []).append(timed(root, argv))
    for label, root in trees:
        base = statistics.median(times[(label, "python -c pass")])
        cells = [f"{name} {statistics.median(times[(label, name)]):.3f} s" for name, argv in COMMANDS.items() if argv]
        print(f"{label:6} ({root.name}): " + "; ".join(cells) + f" (baseline {base:.3f} s)", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
