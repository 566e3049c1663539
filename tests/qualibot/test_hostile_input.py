"""Hostile input through the real routes on a real socket: bodies json.loads would choke on are a
400 JSON error that writes nothing; clients that trickle their headers or body are cut off while
others are served."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from core.settings import Settings
from qualibot.app import create_app
from tests.helpers import running
from tests.proof.security import fingerprint
from tests.seed import WEBHOOK_SECRET, seed, tenant_config

TEXT = Path(__file__).parents[1] / "bot" / "fixtures" / "evolution" / "text-2.3.7.json"
EVO = {"Content-Type": "application/json", "X-Webhook-Secret": WEBHOOK_SECRET}


def message(timestamp: str = "1771373500", message_id: str = "HOSTILE1") -> bytes:
    """The 2.3.7 text fixture with `messageTimestamp` as raw JSON text."""
    body = json.loads(TEXT.read_text())
    body["data"]["key"]["id"] = message_id
    body["data"]["messageTimestamp"] = "@TS@"
    return json.dumps(body).replace('"@TS@"', timestamp).encode()


@pytest.fixture
async def app_url(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> AsyncIterator[str]:
    await seed(db, tenant_config())
    settings = make_settings(header_timeout_seconds=0.5, body_timeout_seconds=0.5, max_body_bytes=4 << 20)
    async with running(create_app(settings, pool=db)) as url:
        yield url


@pytest.mark.parametrize(
    ("raw", "code"),
    [
        (b"[" * 1_000_000, "json_too_deep"),  # was a RecursionError: 500, retried by Evolution forever
        (message("Infinity"), "invalid_number"),
        (message("-Infinity"), "invalid_number"),
        (message("NaN"), "invalid_number"),
        (message("1e400"), "invalid_number"),
        (message("9" * 100_000), "invalid_number"),
        (b'{"event": "messages.upsert", "instance": "clinic-main", "data": ' + b"[" * 100 + b"]" * 100 + b"}",
         "json_too_deep"),
    ],
)
async def test_evolution_bad_numbers_and_deep_json_are_400_and_write_nothing(
    app_url: str, db: asyncpg.Pool, raw: bytes, code: str
) -> None:
    before = await fingerprint(db)
    async with aiohttp.ClientSession() as http, http.post(app_url + "/webhooks/evolution", data=raw,
                                                          headers=EVO) as resp:
        answer = await resp.json()
    assert (resp.status, answer["error"]) == (400, code) and answer["detail"]
    assert await fingerprint(db) == before


async def test_non_ascii_digits_in_a_timestamp_are_read_as_unreadable_not_a_500(app_url: str, db: asyncpg.Pool) -> None:
    async with aiohttp.ClientSession() as http:
        for n, odd in enumerate(('"²"', '"١٧٧١٣٧٣٥٠٠"', '"--5"', '"' + "9" * 5000 + '"', "1e300")):
            async with http.post(app_url + "/webhooks/evolution", data=message(odd, f"ODD{n}"), headers=EVO) as resp:
                assert (resp.status, (await resp.json())["status"]) == (200, "stored")
    assert await db.fetchval("SELECT count(*) FROM messages WHERE sent_at > now() - interval '1 hour'") == 5


async def _request_while(url: str) -> int:
    async with aiohttp.ClientSession() as http, http.get(url + "/healthz") as resp:
        return resp.status


async def _closed(reader: asyncio.StreamReader) -> bytes:
    """Everything the server sends until it closes the connection."""
    return await reader.read()


async def test_headers_sent_slowly_are_cut_off_while_others_are_served(app_url: str) -> None:
    host, port = app_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    writer.write(b"POST /webhooks/evolution HTTP/1.1\r\nHost: x\r\n")

    async def trickle() -> None:
        for n in range(10_000):  # a header line every 50 ms, never the blank line that ends them
            writer.write(b"X-Slow-%d: y\r\n" % n)
            await writer.drain()
            await asyncio.sleep(0.05)

    dripping = asyncio.create_task(trickle())
    try:
        assert await _request_while(app_url) == 200  # served while the slow one holds its connection
        got = await asyncio.wait_for(_closed(reader), timeout=30)  # a deadline, not a measurement
        assert got == b""  # closed without an answer: it never finished a request
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()


async def test_a_body_sent_slowly_gets_408_while_others_are_served(app_url: str, db: asyncpg.Pool) -> None:
    host, port = app_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    body = message()
    writer.write(b"POST /webhooks/evolution HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 b"X-Webhook-Secret: " + WEBHOOK_SECRET.encode() + b"\r\nContent-Length: %d\r\n\r\n" % len(body))
    writer.write(body[:10])

    async def trickle() -> None:
        for byte in body[10:]:
            writer.write(bytes([byte]))
            await writer.drain()
            await asyncio.sleep(0.05)

    before = await fingerprint(db)
    dripping = asyncio.create_task(trickle())
    try:
        assert await _request_while(app_url) == 200
        answer = await asyncio.wait_for(_closed(reader), timeout=30)
        head, _, payload = answer.partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 408"), answer[:200]
        assert json.loads(payload)["error"] == "body_timeout"
    finally:
        dripping.cancel()
        await asyncio.gather(dripping, return_exceptions=True)
        writer.close()
    assert await fingerprint(db) == before


async def test_a_client_that_sends_nothing_is_closed(app_url: str) -> None:
    host, port = app_url.removeprefix("http://").split(":")
    reader, writer = await asyncio.open_connection(host, int(port))
    try:
        assert await asyncio.wait_for(_closed(reader), timeout=30) == b""
    finally:
        writer.close()
