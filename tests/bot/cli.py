"""Running the `qualibot` command line against a test database, as an operator would."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def qualibot(database_url: str, *args: str, **env: str) -> tuple[int, str, str]:
    """(exit code, stdout, stderr) of `python -m qualibot ARGS` with DATABASE_URL and `env` set."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", *args, cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, **env},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()
