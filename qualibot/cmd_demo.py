"""`qualibot demo`: see qualibot work end to end before wiring any real account.

It runs on an embedded database of its own (`<QUALIBOT_DATA_DIR>/demo`), never on `DATABASE_URL`,
starts labelled stand-ins for Evolution, the LLM and Meta on 127.0.0.1 (qualibot.demo_peers),
plays a short dialog that arrives from a Click-to-WhatsApp ad and books a visit, and prints the
resulting `capi_events_log` rows and the funnel.
"""

from __future__ import annotations

import argparse
import asyncio
import time
import uuid
from typing import Any

import aiohttp
from aiohttp import web

from capi import ledger
from capi.errors import SUGGESTED_EVENT_NAMES
from core.db import open_pool
from core.migrate import migrate
from core.settings import Settings
from qualibot.app import create_app
from qualibot.cli import CliError
from qualibot.demo_peers import StandIns
from qualibot.tenants import parse_config
from qualibot.tenants_db import apply_config
from qualification import dialogs

SECRET = "demo-webhook-secret-" + "x" * 8
PHONE = "79161234567"
CLICK_ID = "ARAkLkDemoClickId0123456789"
DIALOG = [
    "Hello! I saw your ad about implants.",
    "I need an implant for a lower molar, my budget is about 1000 USD, next week suits me.",
    "Tuesday 10:00 is good, please book me.",
]


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("demo")
    p.add_argument("--timeout", type=float, default=50.0, help="seconds to wait for the events (default 50)")
    p.set_defaults(func=run)


def demo_config(urls: dict[str, str]) -> dict[str, Any]:
    return {"accounts": [{
        "id": "demo", "name": "Demo Clinic", "default_region": "RU", "access_token": "demo-user-token",
        "ad_accounts": [{"id": "act_demo", "access_token": "demo-ad-account-token"}],
        "whatsapp_instances": [{"name": "demo-instance", "api_url": urls["evolution"], "api_key": "demo-key",
                                "webhook_secret": SECRET, "default_direction": "implants"}],
        "directions": [{
            "id": "implants", "name": "Dental implants (demo)", "ad_account": "act_demo",
            "pixel_id": "100200300", "whatsapp_business_account_id": "400500600",
            "ad_ids": ["120239177205810192"],
            "bot_prompt": "You are the friendly assistant of Demo Clinic. Offer a consultation.",
            "qualification_prompt": "Questions: which tooth, when, budget. Booking: a slot agreed.",
            "capi": {"enabled": True, "source": "whatsapp", "event_names": dict(SUGGESTED_EVENT_NAMES)},
        }],
    }]}


def webhook(text: str, first: bool) -> dict[str, Any]:
    data: dict[str, Any] = {
        "key": {"remoteJid": f"{PHONE}@s.whatsapp.net", "fromMe": False, "id": uuid.uuid4().hex[:20].upper()},
        "pushName": "Demo Client", "message": {"conversation": text},
        "messageType": "conversation", "messageTimestamp": int(time.time()),
    }
    if first:
        data["contextInfo"] = {"externalAdReply": {
            "title": "Implants in one day", "sourceType": "ad", "sourceId": "120239177205810192",
            "sourceUrl": "https://fb.me/demo", "ctwaClid": CLICK_ID}}
    return {"event": "messages.upsert", "instance": "demo-instance", "data": data}


async def run(args: argparse.Namespace, settings: Settings) -> int:
    stand_ins = StandIns()
    urls = await stand_ins.start()
    settings = settings.model_copy(update={
        "database_url": None, "data_dir": settings.data_dir / "demo", "buffer_seconds": 1.0,
        "worker_poll_seconds": 0.1, "openai_api_key": "demo-key", "openai_base_url": f"{urls['llm']}/v1",
        "meta_graph_url": urls["meta"],
    })
    print(f"stand-ins (demo only): evolution {urls['evolution']}, llm {urls['llm']}, meta {urls['meta']}")
    print(f"event names: {', '.join(SUGGESTED_EVENT_NAMES.values())}, not the defaults "
          "(Lead, CompleteRegistration, Schedule): Meta refuses those for Click-to-WhatsApp events, "
          "and so does the demo's stand-in")
    try:
        async with open_pool(settings, max_size=10) as pool:
            async with pool.acquire() as conn:
                await migrate(conn)
                await conn.execute("TRUNCATE leads, dialog_analysis, messages, capi_events_log, jobs CASCADE")
            await apply_config(pool, parse_config(demo_config(urls)))
            await _play(settings, pool, stand_ins, args.timeout)
            return await _report(pool)
    finally:
        await stand_ins.stop()


async def _play(settings: Settings, pool: Any, stand_ins: StandIns, wait_seconds: float) -> None:
    app = create_app(settings, pool=pool, with_workers=True)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    deadline = time.monotonic() + wait_seconds
    try:
        async with aiohttp.ClientSession() as http:
            for n, text in enumerate(DIALOG):
                print(f"  client: {text}")
                async with http.post(f"http://127.0.0.1:{port}/webhooks/evolution", json=webhook(text, n == 0),
                                     headers={"X-Webhook-Secret": SECRET}) as resp:
                    if resp.status != 200:
                        raise CliError(f"the webhook answered {resp.status}: {await resp.text()}")
                await _until(lambda n=n: len(stand_ins.sent_texts) > n, deadline, "the bot's reply")
                print(f"  bot:    {stand_ins.sent_texts[n].get('text')}")
            await _until_rows(pool, deadline)
    finally:
        await runner.cleanup()


async def _until(probe: Any, deadline: float, what: str) -> None:
    while not probe():
        if time.monotonic() > deadline:
            raise CliError(f"demo timed out waiting for {what}")
        await asyncio.sleep(0.1)


async def _until_rows(pool: Any, deadline: float) -> None:
    while await ledger.count_status(pool, "success") < 3:
        if time.monotonic() > deadline:
            return  # the report shows what did arrive
        await asyncio.sleep(0.2)


async def _report(pool: Any) -> int:
    rows = await ledger.outcomes_by_level(pool)
    print("\ncapi_events_log:")
    print(f"  {'level':<6}{'event':<22}{'status':<9}{'attempts':<10}{'event_id':<38}fbtrace_id")
    for r in rows:
        print(f"  {r['event_level']:<6}{r['event_name']:<22}{r['status']:<9}{r['attempts']:<10}"
              f"{r['event_id']:<38}{r['trace'] or ''}")
    flags = await dialogs.first_sent_flags(pool)
    print("\nfunnel: " + " -> ".join(f"{r['event_name']} {r['status']}" for r in rows))
    if flags is not None:
        print(f"dialog_analysis flags: interest={flags[0]} qualified={flags[1]} scheduled={flags[2]}")
    ok = sum(1 for r in rows if r["status"] == "success") == 3
    sent = ", ".join(SUGGESTED_EVENT_NAMES.values())
    print(f"demo complete: {sent} were sent" if ok else "demo incomplete")
    return 0 if ok else 1
