"""Retention of the people's data (`QUALIBOT_MESSAGE_RETENTION_DAYS`): one worker loop per kind of
data, each removing what is older than the retention a batch at a time.

The owning package gives the removal (`remove(pool, before, batch) -> rows changed`, its own SQL
on its own table, with an index that makes a pass with nothing to do one probe); this loop says
when: a first look shortly after the worker starts (not in the middle of its start), then at once
again while batches come back full, else hourly. Retention 0 keeps everything.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta

import asyncpg

from core.context import AppContext
from core.logging import get_logger

log = get_logger("core.retention")

Remove = Callable[[asyncpg.Pool, datetime, int], Awaitable[int]]

BATCH = 1000
POLL_SECONDS = 3600.0  # data expires by the day: an hourly look is plenty
START_SECONDS = 1.0  # the first look waits for the worker's start (the intake drain's first look) to pass


class RetentionLoop:
    """A worker loop step (`JobRegistry.register_loop`) removing `what` past the retention."""

    def __init__(self, what: str, remove: Remove, batch: int = BATCH) -> None:
        self.what = what
        self.remove = remove
        self.batch = batch
        self.started = False

    async def __call__(self, ctx: AppContext) -> float:
        if not self.started:
            self.started = True
            return START_SECONDS
        days = ctx.settings.message_retention_days
        if days == 0:
            return POLL_SECONDS  # kept forever; the setting is read again next time
        removed = await self.remove(ctx.pool, datetime.now(UTC) - timedelta(days=days), self.batch)
        if removed:
            log.info("retention.removed", what=self.what, rows=removed, retention_days=days)
        return 0.0 if removed >= self.batch else POLL_SECONDS
