"""An instance removed after it was cached: its webhooks store nothing and answer 404."""

from __future__ import annotations

import time
from collections.abc import Callable

import aiohttp
import asyncpg

from core.settings import Settings
from qualibot.app import create_app
from tests.helpers import running
from tests.seed import WEBHOOK_SECRET, seed


def body(message_id: str) -> dict[str, object]:
    return {"event": "messages.upsert", "instance": "clinic-main", "data": {
        "key": {"remoteJid": "79160000001@s.whatsapp.net", "fromMe": False, "id": message_id},
        "message": {"conversation": "hello"}, "messageTimestamp": int(time.time())}}


async def test_removed_instance_answers_404_and_stores_nothing(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    await seed(db)
    async with running(create_app(make_settings(), pool=db)) as url, \
            aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
        async with http.post(f"{url}/webhooks/evolution", json=body("FIRST")) as resp:
            assert resp.status == 200  # the instance is now in the app's cache
        await db.execute("DELETE FROM whatsapp_instances")
        async with http.post(f"{url}/webhooks/evolution", json=body("SECOND")) as resp:
            assert resp.status == 404
            assert (await resp.json())["error"] == "unknown_instance"
    assert await db.fetchval("SELECT count(*) FROM messages WHERE message_id = 'SECOND'") == 0
