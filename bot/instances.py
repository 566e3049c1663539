"""WhatsApp instances as the webhook needs them, cached for a few seconds per app.

Every webhook needs its instance (secret, account, default direction) before anything is written.
Reading it from the database would double intake's round trips, so a process keeps each instance
it has seen for `TTL` seconds; a changed secret or direction takes effect within that time. Unknown
names are not cached, so a newly configured instance works at once.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import asyncpg
from aiohttp import web

from core.jobs import Executor

TTL = 5.0


@dataclass(frozen=True)
class Instance:
    name: str
    account_id: str
    webhook_secret: str
    api_key: str  # the instance's Evolution token: the global webhook's body `apikey` (bot.auth)
    default_direction_id: str | None


async def load_instance(db: Executor, name: str) -> Instance | None:
    """An Evolution instance by name (a Cloud number's row is not one: its webhook is Meta's)."""
    row = await db.fetchrow(
        """SELECT name, account_id, webhook_secret, api_key, default_direction_id
           FROM whatsapp_instances WHERE name = $1 AND channel = 'evolution'""",
        name,
    )
    return Instance(**dict(row)) if row else None


async def evolution_endpoint(db: Executor, name: str) -> tuple[str, str] | None:
    """(api_url, api_key) of the instance: where and how its replies are sent."""
    row = await db.fetchrow(
        "SELECT api_url, api_key FROM whatsapp_instances WHERE name = $1 AND channel = 'evolution'", name
    )
    return (row["api_url"], row["api_key"]) if row else None


async def evolution_endpoints(db: Executor) -> list[tuple[str, str, str]]:
    """(name, api_url, api_key) of every instance, by name."""
    rows = await db.fetch(
        "SELECT name, api_url, api_key FROM whatsapp_instances WHERE channel = 'evolution' ORDER BY name"
    )
    return [(r["name"], r["api_url"], r["api_key"]) for r in rows]


async def instance_names(db: Executor) -> list[str]:
    return [r["name"] for r in await db.fetch("SELECT name FROM whatsapp_instances ORDER BY name")]


async def instance_directions(db: Executor) -> list[tuple[str, str, str | None]]:
    """(name, account, default direction) of every instance."""
    rows = await db.fetch("SELECT name, account_id, default_direction_id FROM whatsapp_instances ORDER BY name")
    return [(r["name"], r["account_id"], r["default_direction_id"]) for r in rows]


class InstanceCache:
    def __init__(self, ttl: float = TTL) -> None:
        self.ttl = ttl
        self._entries: dict[str, tuple[float, Instance]] = {}

    async def get(self, pool: asyncpg.Pool, name: str) -> Instance | None:
        now = time.monotonic()
        hit = self._entries.get(name)
        if hit is not None and hit[0] > now:
            return hit[1]
        instance = await load_instance(pool, name)
        if instance is None:
            self._entries.pop(name, None)
            return None
        if len(self._entries) > 10_000:  # bound memory against a flood of names
            self._entries.clear()
        self._entries[name] = (now + self.ttl, instance)
        return instance

    def forget(self, name: str) -> None:
        self._entries.pop(name, None)


INSTANCES: web.AppKey[InstanceCache] = web.AppKey("bot_instances", InstanceCache)
