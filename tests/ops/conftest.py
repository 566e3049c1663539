"""Fixtures for the operations commands: run `qualibot ...` in-process against the test database,
and write capi_events_log rows the way the sender leaves them."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pytest

from qualibot.cli import main
from tests.seed import PIXEL_ID

SEED_NAMES = {1: "Lead", 2: "CompleteRegistration", 3: "Schedule"}  # the seed's default event names


@dataclass(frozen=True)
class Run:
    code: int
    out: str
    err: str


Qualibot = Callable[..., Awaitable[Run]]


@pytest.fixture
def qualibot(database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Qualibot:
    """`await qualibot("report", "funnel")` → Run(exit code, stdout, stderr). `main()` runs its own
    event loop, so it runs in a thread; the environment points it at this run's database."""
    monkeypatch.setenv("DATABASE_URL", database_url)
    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "META_GRAPH_URL", "META_API_VERSION"):
        monkeypatch.delenv(name, raising=False)

    async def run(*args: str) -> Run:
        capsys.readouterr()
        code = await asyncio.to_thread(main, list(args))
        out, err = capsys.readouterr()
        return Run(code, out, err)

    return run


async def add_events(
    db: asyncpg.Pool,
    count: int = 1,
    *,
    direction: str | None = "implants",
    level: int = 1,
    name: str | None = None,
    status: str = "success",
    at: datetime | None = None,
    pixel: str | None = PIXEL_ID,
    error: str | None = None,
    hint: str | None = None,
    response: Any = None,
) -> None:
    """`count` log rows (no dialog: CRM-style decisions) created at `at` (default: now)."""
    await db.execute(
        """INSERT INTO capi_events_log (direction_id, pixel_id, event_name, event_level, event_id, source,
                                        status, error, hint, response, created_at, updated_at)
           SELECT $1, $2, $3, $4, gen_random_uuid()::text, 'whatsapp', $5, $6, $7, $8, $9, $9
           FROM generate_series(1, $10)""",
        direction, pixel, name or SEED_NAMES[level], level, status, error, hint, response,
        at or datetime.now(UTC), count,
    )
