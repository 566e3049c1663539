"""`qualibot demo` from a clean data directory ends with three successful CAPI events."""

from __future__ import annotations

import asyncio
import os
import sys
import time
from pathlib import Path

import aiohttp

from qualibot.demo_peers import StandIns

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_sends_its_three_levels_under_names_meta_accepts(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["QUALIBOT_DATA_DIR"] = str(tmp_path / "data")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", "demo", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()[-2000:]
    for name in ("LeadSubmitted", "QualifiedLead", "InitiateCheckout"):
        assert any(name in line and "success" in line for line in text.splitlines()), text
    assert "demo complete" in text
    assert "not the defaults (Lead, CompleteRegistration, Schedule): Meta refuses those" in text
    assert (tmp_path / "data" / "demo" / "pgdata").is_dir()  # the embedded database, not DATABASE_URL


async def test_the_demo_meta_refuses_what_meta_refuses() -> None:
    # reference meta-capi.md §2/§4: a business-messaging event named Lead is refused (2804066), whole request
    stand_ins = StandIns()
    urls = await stand_ins.start()
    event = {"event_name": "Lead", "event_time": int(time.time()), "event_id": "e1",
             "action_source": "business_messaging", "messaging_channel": "whatsapp",
             "user_data": {"ctwa_clid": "c"}}
    try:
        async with aiohttp.ClientSession() as http:
            url = f"{urls['meta']}/v25.0/100200300/events"
            async with http.post(url, json={"data": [event, {**event, "event_name": "LeadSubmitted"}]}) as resp:
                assert resp.status == 400
                assert (await resp.json())["error"]["error_subcode"] == 2804066
            async with http.post(url, json={"data": [{**event, "event_name": "LeadSubmitted"}]}) as resp:
                assert resp.status == 200 and (await resp.json())["events_received"] == 1
    finally:
        await stand_ins.stop()
    assert [e["event_name"] for e in stand_ins.meta_events] == ["LeadSubmitted"]
