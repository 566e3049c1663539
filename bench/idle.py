"""Idle cost: transactions per second of one idle `qualibot worker`, before and after (issue 15.2).

For each checkout (`--before-root DIR`, another checkout with its own `.venv`, if given; then this one):
a fresh database, migrated by that checkout's own `qualibot migrate` and seeded with the standard
tenant; then that checkout's `qualibot worker` is started with its default settings and left
idle. After `--settle` seconds, the database's `xact_commit + xact_rollback` (pg_stat_database,
read from another database so the reading does not count) is sampled over `--seconds`.
Every statement outside an explicit transaction is one transaction, so this is close to the
number of round trips the idle process makes.

    .venv/bin/python bench/idle.py [--seconds 30] [--settle 5] [--before-root DIR]

Database: TEST_DATABASE_URL's server, else PostgreSQL on 127.0.0.1:5432, else an embedded one.
Target (issue 18.3, which builds on this): ≤ 1 transaction per second per idle process.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import asyncpg
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.dbsetup import fresh_database, with_database  # noqa: E402
from tests.seed import tenant_config  # noqa: E402

STATS_SQL = """SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = $1"""


def checkout_env(dsn: str, data_dir: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("QUALIBOT_", "OPENAI_", "META_"))}
    env.update({"DATABASE_URL": dsn, "QUALIBOT_DATA_DIR": data_dir, "QUALIBOT_LOG_LEVEL": "warning",
                "PYTHONUNBUFFERED": "1"})
    return env


def spawn(root: Path, *command: str, env: dict[str, str], **kwargs: Any) -> subprocess.Popen[str]:
    """The checkout's own `qualibot <command>`, from its own virtualenv and directory."""
    return subprocess.Popen([str(root / ".venv" / "bin" / "qualibot"), *command], cwd=root, env=env, text=True,
                            stderr=subprocess.DEVNULL, **kwargs)


async def prepare_checkout(root: Path, dsn: str, env: dict[str, str], config: dict[str, Any] | None = None) -> None:
    """Migrate with the checkout's own migrations, then apply `config` (the standard tenant by default)
    with the checkout's own `qualibot config apply`: each checkout writes its own tables."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as file:
        yaml.safe_dump(config or tenant_config(), file)
    for command in (("migrate",), ("config", "apply", file.name)):
        done = spawn(root, *command, env=env, stdout=subprocess.DEVNULL)
        if await asyncio.to_thread(done.wait) != 0:
            raise RuntimeError(f"`qualibot {' '.join(command)}` of {root} failed")
    os.unlink(file.name)


def checkouts(before_root: Path | None) -> list[tuple[str, Path]]:
    """What to measure: `--before-root`'s checkout as `before`, if given, then this one as `after`."""
    return ([("before", before_root)] if before_root else []) + [("after", ROOT)]


def parse_args(parser: argparse.ArgumentParser) -> argparse.Namespace:
    """The bench's own options plus `--before-root`, the checkout to compare with (its .venv is used)."""
    parser.add_argument("--before-root", type=lambda p: Path(p).resolve(), default=None,
                        help="another checkout, measured first as `before` (its .venv is used)")
    return parser.parse_args()


async def idle_rate(root: Path, seconds: float, settle: float) -> float:
    async with fresh_database(Path(tempfile.mkdtemp(prefix="qualibot-idle-"))) as dsn:
        env = checkout_env(dsn, tempfile.mkdtemp(prefix="qualibot-idle-data-"))
        await prepare_checkout(root, dsn, env)
        database = dsn.rsplit("/", 1)[1].split("?")[0]
        admin = await asyncpg.connect(with_database(dsn, "postgres"))
        proc = spawn(root, "worker", env=env, stdout=subprocess.PIPE)
        try:
            assert proc.stdout is not None
            line = await asyncio.to_thread(proc.stdout.readline)
            if "worker running" not in line:
                raise RuntimeError(f"the worker of {root} did not start: {line!r}")
            await asyncio.sleep(settle)
            before = await admin.fetchval(STATS_SQL, database)
            started = time.monotonic()
            await asyncio.sleep(seconds)
            await asyncio.sleep(1.5)  # backends flush their counters within a second of going idle
            after = await admin.fetchval(STATS_SQL, database)
            return float(after - before) / (time.monotonic() - started - 1.5)
        finally:
            proc.terminate()
            await asyncio.to_thread(proc.wait, 30)
            await admin.close()


async def run(args: argparse.Namespace) -> int:
    rates = {}
    for label, root in checkouts(args.before_root):
        rates[label] = await idle_rate(root, args.seconds, args.settle)
        print(f"{label:6} ({root.name}): {rates[label]:.2f} transactions/s of one idle worker", flush=True)
    if rates.get("before"):
        print(f"ratio after/before: {rates['after'] / rates['before']:.3f}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--settle", type=float, default=5.0)
    return asyncio.run(run(parse_args(parser)))


if __name__ == "__main__":
    sys.exit(main())
