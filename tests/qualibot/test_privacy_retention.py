"""QUALIBOT_MESSAGE_RETENTION_DAYS: the workers remove message text, CRM webhook records and the
model's reasoning past it, and keep the rest."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import asyncpg

from core.context import AppContext
from core.retention import POLL_SECONDS, START_SECONDS, RetentionLoop
from core.settings import Settings
from qualibot.app import create_app
from qualification.dialogs import remove_old_text
from tests.crm.support import FORM, amo_path, body
from tests.fakes.evolution_webhook import client_message
from tests.helpers import running, wait_for
from tests.seed import WEBHOOK_SECRET, seed

PHONE = "79161230077"


async def post_and_link(db: asyncpg.Pool, settings: Settings, texts: list[str], first: int = 0,
                        until: Callable[[], Awaitable[Any]] | None = None, crm: bool = False) -> None:
    """Post client messages (and with `crm` an amoCRM contact webhook) to a running app with
    workers, wait until the messages are linked (and `until`)."""
    async with running(create_app(settings, pool=db, with_workers=True)) as url, \
            aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
        if crm:
            async with http.post(url + amo_path(), data=body("amocrm/webhook-update-contact.txt"),
                                 headers=FORM) as resp:
                assert resp.status == 200
        for n, text in enumerate(texts, start=first):
            message = client_message(PHONE, text, f"RET{n}", push_name="Irina")
            async with http.post(f"{url}/webhooks/evolution", json=message) as resp:
                assert resp.status == 200

        async def linked() -> bool:
            return bool(await db.fetchval("SELECT count(*) = 0 FROM messages WHERE dialog_id IS NULL"))

        await wait_for(linked, what="messages linked to their dialog")
        if until is not None:
            await wait_for(until, what=until.__doc__ or "")


async def test_text_past_retention_is_removed_by_the_worker_and_the_rest_stays(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    await seed(db)
    settings = make_settings(message_retention_days=365)
    await post_and_link(db, settings, ["I have a toothache, my name is Irina", "Tomorrow at 10?"], crm=True)
    assert await db.fetchval("SELECT count(*) FROM webhook_events") == 1
    # a year and more ago (the reasoning stands for an analysis of that time: no LLM runs here)
    await db.execute("UPDATE messages SET created_at = now() - interval '400 days'")
    await db.execute("UPDATE webhook_events SET received_at = now() - interval '400 days'")
    await db.execute("""UPDATE dialog_analysis SET analysis_reasoning = 'Irina booked', analyzed_at = now() - interval
                        '400 days'""")

    async def expired() -> bool:
        """old text, CRM records and reasoning removed by the workers' retention loops"""
        return bool(await db.fetchval(
            """SELECT (SELECT count(*) FROM messages WHERE text_removed_at IS NOT NULL) = 2
                      AND NOT EXISTS (SELECT 1 FROM webhook_events)
                      AND (SELECT analysis_reasoning IS NULL FROM dialog_analysis)"""))

    await post_and_link(db, settings, ["Still there?"], first=2, until=expired)
    rows = await db.fetch("SELECT text, push_name FROM messages ORDER BY id")
    assert [(r["text"], r["push_name"]) for r in rows] == [("", None), ("", None), ("Still there?", "Irina")]
    # the rows and the dialog's count stay: the 2+ messages rule still counts the blanked ones
    assert await db.fetchval("SELECT client_message_count FROM dialog_analysis") == 3


async def test_zero_keeps_text_forever(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> None:
    await seed(db)
    await post_and_link(db, make_settings(), ["hello"])
    await db.execute("UPDATE messages SET created_at = now() - interval '4000 days'")
    loop = RetentionLoop("message text", remove_old_text)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=make_settings(message_retention_days=0), pool=db, http=http, llm=None)
        assert await loop(ctx) == START_SECONDS
        assert await loop(ctx) == POLL_SECONDS
    assert await db.fetchval("SELECT text FROM messages") == "hello"


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
