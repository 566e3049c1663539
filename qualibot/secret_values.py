"""Keeping `core.secrets` current in a serving or working process.

The registry learns every configured secret value: `OPENAI_API_KEY` from the settings, and every
tenant's tokens, keys and webhook secrets from the database (`tenants_db.secret_values`), at start
and again every `QUALIBOT_SECRETS_REFRESH_SECONDS`, so a `config apply` made by another process is
known within that time. A client that calls a peer also passes the secret it sent (`extra=`), which
covers the moments between a change and the next refresh.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg

from core.db import UNAVAILABLE_ERRORS
from core.logging import get_logger
from core.secrets import SECRETS
from core.settings import Settings
from qualibot.tenants_db import secret_values

log = get_logger("qualibot.secrets")


def register_settings_secrets(settings: Settings) -> None:
    SECRETS.set_source("settings", [settings.openai_api_key])


async def refresh_secrets(pool: asyncpg.Pool, settings: Settings) -> None:
    """Load every configured secret value into the registry (replacing what the last load had)."""
    register_settings_secrets(settings)
    SECRETS.set_source("tenants", await secret_values(pool))


@asynccontextmanager
async def secrets_kept_current(pool: asyncpg.Pool, settings: Settings) -> AsyncIterator[None]:
    """Load the secrets now and keep reloading them in the background for the block."""

    async def refresh() -> None:
        try:
            await refresh_secrets(pool, settings)
        except (*UNAVAILABLE_ERRORS, asyncpg.PostgresError) as exc:
            # the previous values stay registered; the next round tries again
            log.warning("secrets.refresh_failed", error_type=type(exc).__name__)

    async def keep() -> None:
        while True:
            await asyncio.sleep(settings.secrets_refresh_seconds)
            await refresh()

    await refresh()
    task = asyncio.create_task(keep())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
