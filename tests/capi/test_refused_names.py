"""Event names Meta refuses for business messaging (subcode 2804066): a few requests whatever the
number of events, an `error` row with the hint for each, doctor failing, and after the fix one
`capi retry` that sends them all under the same event ids, once each.

The fake Graph refuses as Meta does (reference meta-capi.md §2 and §4, fixture
error-2804066-invalid-event-type.json): a whole request fails for one such event, and its error
does not say which event (facebook-python-business-sdk facebook_business/exceptions.py reads one
request-wide `error`).
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from capi.errors import BUSINESS_MESSAGING_EVENT_NAMES
from capi.outbox import Outbox
from tests.capi.conftest import log_row, make_dialog, record
from tests.fakes.graph import FakeGraph
from tests.qualibot.test_serve import ROOT, free_port
from tests.seed import PIXEL_ID, seed, tenant_config

CLI = Callable[..., Awaitable[int]]
ACCEPTED = {1: "LeadSubmitted", 2: "QualifiedLead", 3: "InitiateCheckout"}


def _config(tmp_path: Path, name: str, **capi: Any) -> str:
    """The seed tenant as a config file, with these `capi` settings for its direction."""
    cfg = tenant_config()
    direction = cfg["accounts"][0]["directions"][0]
    direction["capi"].pop("event_names")  # the defaults: Lead, CompleteRegistration, Schedule
    direction["capi"].update(capi)
    path = tmp_path / name
    path.write_text(yaml.safe_dump(cfg))
    return str(path)


async def _statuses(db: asyncpg.Pool) -> dict[str, int]:
    rows = await db.fetch("SELECT status, count(*) AS n FROM capi_events_log GROUP BY status")
    return {r["status"]: r["n"] for r in rows}


async def test_64_refused_events_cost_a_few_requests_and_are_sent_after_the_fix(
    db: asyncpg.Pool, graph: FakeGraph, outbox: Callable[..., Outbox], qualibot: CLI, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-0123456789abcdef")  # doctor's LLM check passes
    assert await qualibot("config", "apply", _config(tmp_path, "defaults.yaml")) == 0

    # 64 dialogs reach level 1 in four waves, the sender running after each (as its job would)
    dialogs: list[int] = []
    for _ in range(4):
        for _ in range(16):
            dialogs.append(await make_dialog(db))
            await record(db, dialogs[-1], 1)
        await outbox(capi_concurrency=4).run()
    refused_requests = len(graph.requests)
    assert refused_requests <= 4, refused_requests
    assert await _statuses(db) == {"error": 64}
    rows = [await log_row(db, d, 1) for d in dialogs]
    for row in rows:
        assert row["event_name"] == "Lead" and "2804066" in row["error"]
        assert all(name in row["hint"] for name in BUSINESS_MESSAGING_EVENT_NAMES)
        assert "capi.event_names" in row["hint"] and "qualibot capi retry --status error" in row["hint"]
    assert not graph.delivered
    capsys.readouterr()
    assert await qualibot("doctor") == 1
    assert "level 1 Lead" in capsys.readouterr().out

    # the operator fixes the names and retries
    assert await qualibot("config", "apply", _config(tmp_path, "fixed.yaml", event_names=ACCEPTED)) == 0
    assert await qualibot("doctor") == 0
    assert await qualibot("capi", "retry", "--status", "error") == 0
    assert "queued for sending:      64" in capsys.readouterr().out
    await outbox(capi_concurrency=4).run()
    retry_requests = len(graph.requests) - refused_requests
    assert await _statuses(db) == {"success": 64}
    assert set(graph.delivered) == {r["event_id"] for r in rows}  # the same ids...
    assert set(graph.delivered.values()) == {1}  # ...once each
    assert {e["event_name"] for e in graph.events_sent()[-64:]} == {"LeadSubmitted"}
    print(f"requests: {refused_requests} for 64 refused events, {retry_requests} for the 64 retried")
    assert retry_requests <= 4


async def test_a_batch_mixing_a_refused_name_with_accepted_ones_is_split_by_name_not_halved(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: Callable[..., Outbox],
) -> None:
    await seeded.execute("""UPDATE account_directions SET capi_event_names = capi_event_names || '{"1": "Lead"}'""")
    dialogs = [await make_dialog(seeded) for _ in range(20)]
    for d in dialogs:
        for level in (1, 2, 3):
            await record(seeded, d, level)
    stats = await outbox(capi_concurrency=1).run()

    # the batch of 60, then one request per name: Lead refused, QualifiedLead and InitiateCheckout sent
    assert [r["count"] for r in graph.requests] == [60, 20, 20, 20]
    assert (stats.sent, stats.failed, stats.requests) == (40, 20, 4)
    for d in dialogs:
        assert (await log_row(seeded, d, 1))["status"] == "error"
        assert (await log_row(seeded, d, 2))["status"] == (await log_row(seeded, d, 3))["status"] == "success"

    # a later Lead for that dataset fails at once, without a request
    late = await make_dialog(seeded)
    await record(seeded, late, 1)
    await outbox().run()
    row = await log_row(seeded, late, 1)
    assert len(graph.requests) == 4
    assert row["status"] == "error" and row["error"].startswith(f"not sent: Meta refused the event name Lead "
                                                                f"for dataset {PIXEL_ID}")
    assert "LeadSubmitted" in row["hint"] and row["attempts"] == 1


async def test_the_refusal_is_forgotten_when_the_directions_names_change(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: Callable[..., Outbox],
) -> None:
    await seeded.execute("""UPDATE account_directions SET capi_event_names = capi_event_names || '{"1": "Lead"}'""")
    await record(seeded, await make_dialog(seeded), 1)
    await outbox().run()
    assert len(graph.requests) == 1

    # the operator vouches for Lead (this dataset accepts it, as some integrators report)
    graph.business_messaging_names = False
    await seeded.execute("UPDATE account_directions SET capi_allow_unlisted_event_names = true")
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    await outbox().run()
    assert len(graph.requests) == 2 and (await log_row(seeded, dialog, 1))["status"] == "success"


async def test_serve_warns_once_per_enabled_direction_with_unlisted_names(
    db: asyncpg.Pool, database_url: str,
) -> None:
    cfg = tenant_config()
    first = cfg["accounts"][0]["directions"][0]
    first["capi"].pop("event_names")  # the defaults
    cfg["accounts"][0]["directions"] += [
        {**first, "id": "veneers", "name": "Veneers", "ad_ids": [],
         "capi": {**first["capi"], "event_names": ACCEPTED}},
        {**first, "id": "crowns", "name": "Crowns", "ad_ids": [],
         "capi": {**first["capi"], "event_names": {1: "Lead"}, "allow_unlisted_event_names": True}},
        {**first, "id": "braces", "name": "Braces", "ad_ids": [], "capi": {"enabled": False}},
    ]
    await seed(db, cfg)
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", "serve", "--no-workers", cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url, "QUALIBOT_PORT": str(port)},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    try:
        assert proc.stdout is not None
        line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
        assert b"listening" in line
        proc.send_signal(signal.SIGTERM)
        _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    warnings = [json.loads(x) for x in err.decode().splitlines() if "serve.unlisted_event_names" in x]
    assert [w["direction"] for w in warnings] == ["implants"]
    assert warnings[0]["level"] == "warning" and "level 1 Lead" in warnings[0]["detail"]


async def test_allow_unlisted_event_names_is_applied_and_exported(
    db: asyncpg.Pool, qualibot: CLI, tmp_path: Path, capsys: pytest.CaptureFixture[str],
) -> None:
    assert await qualibot("config", "apply", _config(tmp_path, "allow.yaml", allow_unlisted_event_names=True)) == 0
    capsys.readouterr()
    assert await qualibot("config", "export") == 0
    exported = yaml.safe_load(capsys.readouterr().out)
    assert exported["accounts"][0]["directions"][0]["capi"]["allow_unlisted_event_names"] is True
    assert await qualibot("config", "apply", _config(tmp_path, "plain.yaml")) == 0
    assert await db.fetchval("SELECT capi_allow_unlisted_event_names FROM account_directions") is False
    bad = _config(tmp_path, "bad.yaml", allow_unlisted_event_names="perhaps")
    capsys.readouterr()
    assert await qualibot("config", "apply", bad) == 2
    said = capsys.readouterr()
    assert "capi.allow_unlisted_event_names" in said.out + said.err
