"""WhatsApp instances as the webhook needs them, cached for `TTL` seconds per app (`bot.ttl_cache`)."""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from bot.ttl_cache import TtlCache, TtlValue
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


class InstanceCache(TtlCache[Instance]):
    def __init__(self, ttl: float = TTL) -> None:
        super().__init__(load_instance, ttl)


INSTANCES: web.AppKey[InstanceCache] = web.AppKey("bot_instances", InstanceCache)


async def webhook_secrets(db: Executor) -> tuple[str, ...]:
    """Every Evolution instance's webhook secret: what a header credential must match before a large
    body is read (`bot.routes`), when which instance it is for is still unknown."""
    rows = await db.fetch("SELECT webhook_secret FROM whatsapp_instances WHERE channel = 'evolution'")
    return tuple(r["webhook_secret"] for r in rows)


WEBHOOK_SECRETS: web.AppKey[TtlValue[tuple[str, ...]]] = web.AppKey("bot_webhook_secrets", TtlValue)
