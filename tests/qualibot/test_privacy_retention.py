"""QUALIBOT_MESSAGE_RETENTION_DAYS: the workers remove message text past it and keep the rest."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import aiohttp
import asyncpg

from bot.privacy import remove_old_text
from core.settings import Settings
from qualibot.app import create_app
from tests.helpers import running, wait_for
from tests.seed import WEBHOOK_SECRET, seed

PHONE = "79161230077"


def upsert(text: str, message_id: str) -> dict[str, Any]:
    """A messages.upsert as Evolution posts it (evolution-api 2.3.7, as in tests/bot/fixtures)."""
    return {"event": "messages.upsert", "instance": "clinic-main", "data": {
        "key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": False, "id": message_id},
        "pushName": "Irina", "message": {"conversation": text}, "messageType": "conversation",
        "messageTimestamp": int(time.time())}}


async def post_and_link(db: asyncpg.Pool, settings: Settings, texts: list[str], first: int = 0) -> None:
    async with running(create_app(settings, pool=db, with_workers=True)) as url, \
            aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
        for n, text in enumerate(texts, start=first):
            async with http.post(f"{url}/webhooks/evolution", json=upsert(text, f"RET{n}")) as resp:
                assert resp.status == 200

        async def linked() -> bool:
            return bool(await db.fetchval("SELECT count(*) = 0 FROM messages WHERE dialog_id IS NULL"))

        await wait_for(linked, what="messages linked to their dialog")


async def test_text_past_retention_is_removed_by_the_worker_and_the_rest_stays(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    await seed(db)
    settings = make_settings(message_retention_days=365)
    await post_and_link(db, settings, ["I have a toothache, my name is Irina", "Tomorrow at 10?"])
    await db.execute("UPDATE messages SET created_at = now() - interval '400 days'")  # a year and more ago
    dialog_before = await db.fetchrow("SELECT client_message_count, is_interested FROM dialog_analysis")
    await post_and_link(db, settings, ["Still there?"], first=2)  # a worker starts: the loop runs at once

    async def expired() -> list[asyncpg.Record]:
        rows = await db.fetch("SELECT text, push_name, text_removed_at FROM messages ORDER BY id")
        return rows if sum(r["text_removed_at"] is not None for r in rows) == 2 else []

    rows = await wait_for(expired, what="old text removed")
    assert [(r["text"], r["push_name"]) for r in rows] == [("", None), ("", None), ("Still there?", "Irina")]
    dialog = await db.fetchrow("SELECT client_message_count, is_interested FROM dialog_analysis")
    assert dialog["client_message_count"] == dialog_before["client_message_count"] + 1
    assert dialog["is_interested"] == dialog_before["is_interested"]


async def test_zero_keeps_text_forever(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> None:
    await seed(db)
    await post_and_link(db, make_settings(message_retention_days=0), ["hello"])
    await db.execute("UPDATE messages SET created_at = now() - interval '4000 days'")
    await post_and_link(db, make_settings(message_retention_days=0), ["again"], first=1)
    assert [r["text"] for r in await db.fetch("SELECT text FROM messages ORDER BY id")] == ["hello", "again"]


async def test_a_pass_takes_one_batch_and_an_idle_pass_changes_nothing(db: asyncpg.Pool) -> None:
    await seed(db)
    dialog = await db.fetchval(
        """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone) VALUES ('clinic', 'clinic-main', $1)
           RETURNING id""", PHONE)
    await db.executemany(
        """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, created_at)
           VALUES ('clinic-main', $1, $2, 'client', 'old text', now() - interval '2 days')""",
        [(f"m{n}", dialog) for n in range(5)])
    cutoff = await db.fetchval("SELECT now() - interval '1 day'")
    assert [await remove_old_text(db, cutoff, batch=3) for _ in range(3)] == [3, 2, 0]
    assert await db.fetchval("SELECT count(*) FROM messages WHERE text = '' AND text_removed_at IS NOT NULL") == 5
