"""The secret registry: every configured value is replaced wherever it appears, in text, answers and logs."""

from __future__ import annotations

import asyncio
import io
import json
import logging
from collections.abc import Callable, Iterator

import aiohttp
import asyncpg
import pytest

from core.context import AppContext
from core.jobs import Job, JobRegistry, Worker, enqueue
from core.logging import configure_logging, get_logger
from core.secrets import REDACTED, SECRETS, SecretRegistry
from core.settings import Settings
from tests.helpers import wait_for

TOKEN = "EAAGm0PX4ZCpsBAKZC8pZB"
CODE = "q8fk2s9wl3mx7d4v"


@pytest.fixture
def registered() -> Iterator[None]:
    SECRETS.set_source("test", [TOKEN, CODE])
    yield
    SECRETS.set_source("test", [])


def test_each_value_is_replaced_wherever_it_appears() -> None:
    reg = SecretRegistry()
    reg.set_source("tenants", [TOKEN, CODE, None, "short"])
    text = f"(#190) Invalid token {TOKEN}; url https://x.bitrix24.ru/rest/1/{CODE}/crm.deal.get; {TOKEN}{TOKEN}"
    assert reg.redact(text) == (
        f"(#190) Invalid token {REDACTED}; url https://x.bitrix24.ru/rest/1/{REDACTED}/crm.deal.get; "
        f"{REDACTED}{REDACTED}"
    )
    assert reg.redact("a short value is not a secret: short") == "a short value is not a secret: short"


def test_the_longest_value_wins_and_a_source_is_replaced_whole() -> None:
    reg = SecretRegistry()
    reg.set_source("a", ["secret-token-1", "secret-token-1-and-more"])
    assert reg.redact("x secret-token-1-and-more y") == f"x {REDACTED} y"
    reg.set_source("a", ["another-secret"])
    assert reg.redact("secret-token-1 another-secret") == f"secret-token-1 {REDACTED}"


def test_answers_are_redacted_in_depth_and_in_keys() -> None:
    reg = SecretRegistry()
    reg.set_source("t", [TOKEN])
    answer = {"error": {"message": f"bad {TOKEN}", "params": [{TOKEN: 1}, "ok", 3, None]}}
    assert reg.redact_value(answer) == {
        "error": {"message": f"bad {REDACTED}", "params": [{REDACTED: 1}, "ok", 3, None]}
    }
    assert reg.redact_value({"m": "sent-token-value"}, ("sent-token-value",)) == {"m": REDACTED}


def test_raw_bytes_that_are_not_utf8_keep_their_other_bytes() -> None:
    reg = SecretRegistry()
    reg.set_source("t", [TOKEN])
    raw = b"\xff\xfe <html>" + TOKEN.encode() + b"</html> \xc3("
    assert reg.redact_bytes(raw) == b"\xff\xfe <html>" + REDACTED.encode() + b"</html> \xc3("
    broken = "\ud800 half a character, then " + TOKEN  # json.loads('"\\ud800"') makes such strings
    assert reg.redact(broken) == "\ud800 half a character, then " + REDACTED


def test_many_tenants_cost_one_pass() -> None:
    """An automaton, not one search per secret: ten thousand values still redact a long text."""
    reg = SecretRegistry()
    reg.set_source("t", [f"tenant-token-{i:06d}" for i in range(10_000)])
    text = "x" * 100_000 + "tenant-token-004242"
    assert reg.redact(text).endswith(REDACTED)


def test_structlog_lines_lose_configured_values_under_any_key(registered: None) -> None:
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    try:
        get_logger("t").warning("peer.answer", detail=f"Meta said: invalid token {TOKEN}",
                                nested={"url": f"https://x/rest/1/{CODE}/"}, dataset=f"ds {TOKEN}")
    finally:
        configure_logging("info")
    line = stream.getvalue()
    assert TOKEN not in line and CODE not in line
    record = json.loads(line)
    assert record["detail"] == f"Meta said: invalid token {REDACTED}"


def test_standard_library_records_lose_configured_values(
    registered: None, caplog: pytest.LogCaptureFixture
) -> None:
    configure_logging("info")
    logging.getLogger("aiohttp.client").warning("request to https://x/rest/1/%s/ failed: %s", CODE, TOKEN)
    [record] = [r for r in caplog.records if r.name == "aiohttp.client"]
    assert CODE not in record.getMessage() and TOKEN not in record.getMessage()
    assert record.getMessage() == f"request to https://x/rest/1/{REDACTED}/ failed: {REDACTED}"


def test_standard_library_exception_text_loses_configured_values_and_phones(
    registered: None, caplog: pytest.LogCaptureFixture
) -> None:
    """aiohttp logs a request it cannot parse with the parser's exception, which quotes the bytes."""
    configure_logging("info")
    try:
        raise ValueError(f"Invalid header value: b'Bearer {TOKEN}' from 5511988887777")
    except ValueError:
        logging.getLogger("aiohttp.server").exception("Error handling request from %s", "127.0.0.1")
    [record] = [r for r in caplog.records if r.name == "aiohttp.server"]
    text = logging.Formatter().format(record)  # as any handler writes it: message, then exception text
    assert "Error handling request from 127.0.0.1" in text and "ValueError: Invalid header value" in text
    assert TOKEN not in text and REDACTED in text
    assert "5511988887777" not in text and "5511*******77" in text


async def test_a_failing_jobs_stored_error_loses_configured_values(
    registered: None, db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    """jobs.last_error keeps the exception's text, which may quote a peer that echoed a secret."""

    async def handler(ctx: AppContext, job: Job) -> None:
        raise RuntimeError(f"peer answered 401: invalid token {TOKEN}")

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.echo", handler, backoff_base=60)
    async with aiohttp.ClientSession() as http:
        worker = Worker(db, registry, AppContext(make_settings(), db, http, None), poll_seconds=0.02)
        task = asyncio.create_task(worker.run())
        job_id = await enqueue(db, "t.echo", {})

        async def failed() -> str | None:
            return await db.fetchval("SELECT last_error FROM jobs WHERE id = $1 AND attempts = 1 "
                                     "AND status = 'queued' AND last_error IS NOT NULL", job_id)

        last_error = await wait_for(failed, what="the job's first failure")
        await worker.stop(grace=1)
        task.cancel()
    assert last_error == f"RuntimeError: peer answered 401: invalid token {REDACTED}"
