"""A peer that echoes a configured secret (Meta, a CRM, the LLM, Evolution): what qualibot stores and
logs holds the secret replaced, whatever its shape. The values come from the database and the
settings (`qualibot.secret_values`), as in `qualibot serve` and `qualibot worker`.

The echoing peers are guesses: the envelopes are the peers' real error shapes (cited per fake), the
echo of the secret inside them is the attack issue 14 describes, not something observed.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.evolution import EvolutionClient
from capi.outbox import Outbox
from core.context import AppContext, make_llm
from core.logging import configure_logging
from core.secrets import REDACTED, SECRETS
from core.settings import Settings
from qualibot.app import create_app
from qualibot.secret_values import refresh_secrets
from qualibot.tenants import parse_config
from qualibot.tenants_db import apply_config
from qualification.dialogs import mark_sent
from qualification.jobs import qualify_dialog
from tests.capi.conftest import log_row, make_dialog, record
from tests.crm.support import amo_path, body
from tests.fakes.llm import FakeLLM
from tests.fakes.server import FakeServer
from tests.helpers import running, wait_for
from tests.qualification import helpers as qualification
from tests.seed import AMO_SECRET, META_TOKEN, USER_TOKEN, WEBHOOK_SECRET, seed, tenant_config

META_FIXTURES = Path(__file__).resolve().parents[1] / "capi" / "fixtures" / "meta"
AMO_FIXTURES = Path(__file__).resolve().parents[1] / "crm" / "fixtures" / "amocrm"
AMO_TOKEN = "amo-long-lived-token"  # tests/seed.py's amoCRM access token
OPENAI_KEY = "sk-proj-test-0123456789abcdefABCDEF"


@pytest.fixture
def rendered_logs() -> Iterator[io.StringIO]:
    """Every structlog line as the process writes it (after the redaction processor)."""
    stream = io.StringIO()
    configure_logging("info", stream=stream)
    yield stream
    configure_logging("info")


@pytest.fixture(autouse=True)
def forget_secrets() -> Iterator[None]:
    yield
    SECRETS.set_source("tenants", [])
    SECRETS.set_source("settings", [])


class EchoingGraph(FakeServer):
    """Answers every batch with Meta's invalid-token error (fixture error-190-invalid-token.json) whose
    message quotes the token it received and, for good measure, the account's fallback token."""

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/{version}/{dataset}/events", self._events)

    async def _events(self, request: web.Request) -> web.Response:
        sent = await request.json()
        self.requests.append(sent)
        answer = json.loads((META_FIXTURES / "error-190-invalid-token.json").read_text())
        answer["error"]["message"] = (
            f"Invalid OAuth access token - Cannot parse access token {sent['access_token']} (also {USER_TOKEN})"
        )
        return web.json_response(answer, status=401)


class EchoingAmoCRM(FakeServer):
    """amoCRM's 401 problem+json (fixture api-401.json) with the bearer token quoted in `detail`."""

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/api/v4/{kind}/{id}", self._get)

    async def _get(self, request: web.Request) -> web.Response:
        self.requests.append({"path": request.path})
        answer = json.loads((AMO_FIXTURES / "api-401.json").read_text())
        answer["detail"] = f"Invalid token: {request.headers.get('Authorization', '')}"
        return web.json_response(answer, status=401, content_type="application/problem+json")


class EchoingEvolution(FakeServer):
    """Evolution's 401 `{status, error, response: {message: [...]}}` (evolution-api 2.3.7
    src/api/guards/auth.guard.ts throws UnauthorizedException) quoting the apikey it received."""

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/message/sendText/{instance}", self._send)

    async def _send(self, request: web.Request) -> web.Response:
        key = request.headers.get("apikey", "")
        return web.json_response(
            {"status": 400, "error": "Bad Request", "response": {"message": [f"apikey {key} is not valid"]}},
            status=400,
        )


async def test_secrets_are_loaded_from_the_database_and_follow_config_changes(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    cfg = await seed(db)
    settings = make_settings(secrets_refresh_seconds=0.05, openai_api_key=OPENAI_KEY)
    async with running(create_app(settings, pool=db)):
        known = SECRETS.values()
        for secret in (META_TOKEN, USER_TOKEN, WEBHOOK_SECRET, AMO_SECRET, AMO_TOKEN, OPENAI_KEY, "webhookcode"):
            assert secret in known
        assert not any("/rest/" in v for v in known)  # the Bitrix24 URL's code, not the URL
        cfg["accounts"][0]["ad_accounts"][0]["access_token"] = "EAAH-rotated-token-0001"
        await apply_config(db, parse_config(cfg))

        async def rotated() -> bool:
            return "EAAH-rotated-token-0001" in SECRETS.values()

        await wait_for(rotated, what="the new token in the registry")
        assert META_TOKEN not in SECRETS.values()


async def test_a_meta_error_echoing_the_token_is_stored_and_logged_without_it(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], rendered_logs: io.StringIO
) -> None:
    await seed(db)
    async with EchoingGraph() as graph, aiohttp.ClientSession() as http:
        settings = make_settings(meta_graph_url=graph.url)
        await refresh_secrets(db, settings)
        dialog = await make_dialog(db)
        await record(db, dialog, 1)
        await Outbox(db, http, settings, mark_sent).run()
        assert graph.requests and graph.requests[0]["access_token"] == META_TOKEN
    row = await log_row(db, dialog, 1)
    assert row["status"] == "error" and "Invalid OAuth access token" in row["error"]
    stored = json.dumps(row["response"]) + row["error"]
    logs = rendered_logs.getvalue()
    assert "capi.event_failed" in logs and REDACTED in stored and REDACTED in logs
    for secret in (META_TOKEN, USER_TOKEN):
        assert secret not in stored and secret not in logs


async def test_a_crm_answer_echoing_the_token_is_stored_and_logged_without_it(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], rendered_logs: io.StringIO
) -> None:
    async with EchoingAmoCRM() as amo:
        cfg = tenant_config(amocrm_url=amo.url, capi_source="crm", crm_connection="amo-main")
        cfg["accounts"][0]["directions"][0]["capi"]["interest_fields"] = [{"field_id": "93713", "enum_id": "45997"}]
        await seed(db, cfg)
        settings = make_settings(crm_sync_delay_seconds=0.05, crm_retry_base_seconds=5.0,
                                 shutdown_grace_seconds=1.0)
        async with running(create_app(settings, pool=db, with_workers=True)) as url, aiohttp.ClientSession() as s:
            async with s.post(url + amo_path(), data=body("amocrm/webhook-add-lead.txt"),
                              headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
                assert resp.status == 200

            async def failed() -> Any:
                return await db.fetchval("SELECT last_error FROM jobs WHERE name = 'crm.sync' AND last_error <> ''")

            last_error = await wait_for(failed, what="the CRM sync to fail on the echoing amoCRM")
    assert "refused the access token" in last_error and REDACTED in last_error
    logs = rendered_logs.getvalue()
    assert "crm" in logs and AMO_TOKEN not in last_error and AMO_TOKEN not in logs


async def test_an_llm_error_echoing_the_api_key_is_stored_and_logged_without_it(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], rendered_logs: io.StringIO,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """OpenAI's 401 envelope (`invalid_api_key`; OpenAI itself shows only the key's ends, a
    compatible proxy may show all of it)."""
    monkeypatch.setattr("qualification.analysis.RETRY_PAUSE_SECONDS", 0.01)
    await seed(db)
    fake = FakeLLM(lambda _req: {"status": 401, "body": {"error": {
        "message": f"Incorrect API key provided: {OPENAI_KEY}.", "type": "invalid_request_error",
        "param": None, "code": "invalid_api_key"}}})
    async with fake, aiohttp.ClientSession() as http:
        settings = make_settings(openai_api_key=OPENAI_KEY, openai_base_url=fake.base_url)
        await refresh_secrets(db, settings)
        llm = make_llm(settings)
        assert llm is not None
        dialog_id, _ = await qualification.make_dialog(db, messages=[("client", "Hi"), ("client", "booked")])
        await qualify_dialog(AppContext(settings, db, http, llm), qualification.job_for(dialog_id))
        await llm.close()
    assert fake.calls >= 1
    row = await qualification.dialog_row(db, dialog_id)
    assert row["analysis_status"] == "failed"
    logs = rendered_logs.getvalue()
    assert "qualification.analysis" in logs
    assert OPENAI_KEY not in (row["analysis_detail"] or "") and OPENAI_KEY not in logs


async def test_an_evolution_answer_echoing_the_api_key_is_kept_without_it(db: asyncpg.Pool) -> None:
    SECRETS.set_source("tenants", ["instance-api-key-0123"])
    async with EchoingEvolution() as evolution, aiohttp.ClientSession() as http:
        result = await EvolutionClient(http, evolution.url, "instance-api-key-0123").send_text(
            "clinic-main", "79161234567", "hello")
    assert result.error is not None and REDACTED in result.error  # what messages.delivery_error keeps
    assert "instance-api-key-0123" not in result.error
