"""`qualibot doctor --online` asks amoCRM, Bitrix24 and Meta (fakes here) whether the tokens work."""

from __future__ import annotations

from collections.abc import AsyncIterator
from functools import partial
from typing import Any

import asyncpg
import pytest

from tests.fakes.evolution import FakeEvolution, serve_connection_state
from tests.ops import test_doctor
from tests.ops.conftest import Qualibot
from tests.ops.fakes import FakeAmoCRM, FakeBitrix24, FakeMetaGraph
from tests.ops.test_doctor import LLM_KEY, clean_config, lines
from tests.seed import META_TOKEN, PIXEL_ID, seed, tenant_config

AMO_TOKEN = "amo-long-lived-token"  # tests/seed.py's amoCRM connection
B24_CODE = "webhookcode"
FIELDS = [{"field_id": "93713", "enum_id": "45997"}]


@pytest.fixture
async def meta(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[FakeMetaGraph]:
    fake = FakeMetaGraph(META_TOKEN, {PIXEL_ID: "Smile Clinic WhatsApp"})
    monkeypatch.setenv("META_GRAPH_URL", await fake.start())
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
    # --online asks Evolution too (tests/ops/test_doctor_evolution.py): a connected instance here
    evolution = FakeEvolution()
    serve_connection_state(evolution)
    monkeypatch.setattr(test_doctor, "tenant_config", partial(tenant_config, evolution_url=await evolution.start()))
    try:
        yield fake
    finally:
        await evolution.stop()
        await fake.stop()


def crm_config(crm_type: str, amocrm_url: str = "http://127.0.0.1:9", bitrix_url: str = "http://127.0.0.1:9/",
               ) -> dict[str, Any]:
    """A direction whose levels come from the amoCRM or the Bitrix24 connection, at the fakes' URLs."""
    cfg = clean_config(source="crm", crm_connection="amo-main" if crm_type == "amocrm" else "b24-main",
                       interest_fields=FIELDS, qualified_fields=FIELDS, scheduled_fields=FIELDS)
    for conn in cfg["accounts"][0]["crm_connections"]:
        if conn["type"] == "amocrm":
            conn["base_url"] = amocrm_url
        else:
            conn["rest_url"] = bitrix_url
    return cfg


async def test_good_tokens_are_confirmed_and_sent_in_a_header(
    db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph
) -> None:
    async with FakeAmoCRM(AMO_TOKEN) as amo:
        await seed(db, crm_config("amocrm", amocrm_url=amo.url))
        run = await qualibot("doctor", "--online")
    assert run.code == 0, run.out
    assert f"OK     implants  Meta: the token can read dataset {PIXEL_ID} ('Smile Clinic WhatsApp')" in run.out
    assert "OK     implants  amocrm connection amo-main: amoCRM accepted the token (account Smile Clinic)" in run.out
    [request] = meta.requests
    assert request["path"] == f"/v25.0/{PIXEL_ID}"
    assert request["query"] == {"fields": "id,name"}  # the token is never in the URL
    assert request["authorization"] == f"Bearer {META_TOKEN}"
    assert amo.requests == [{"authorization": f"Bearer {AMO_TOKEN}"}]


async def test_bad_tokens_are_errors_and_exit_1(db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph) -> None:
    meta.token = "EAAH-some-other-token"
    async with FakeAmoCRM("another-amo-token") as amo:
        await seed(db, crm_config("amocrm", amocrm_url=amo.url))
        run = await qualibot("doctor", "--online")
    assert run.code == 1
    assert lines(run.out, "ERROR") == [
        "ERROR  implants  Meta: the token is invalid or expired: put a new one in the config and apply it "
        "(HTTP 401, code 190: Invalid OAuth access token - Cannot parse access token)",
        "ERROR  implants  amocrm connection amo-main: amoCRM rejected the token (HTTP 401: Invalid user name or "
        "password); issue a new long-lived token",
    ]
    assert META_TOKEN not in run.out and AMO_TOKEN not in run.out


async def test_a_dataset_the_token_cannot_see_is_an_error(
    db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph
) -> None:
    meta.datasets = {}
    await seed(db, clean_config())
    run = await qualibot("doctor", "--online")
    assert run.code == 1
    [error] = lines(run.out, "ERROR")
    assert error.startswith(f"ERROR  implants  Meta: dataset {PIXEL_ID} does not exist or this token cannot access it")


async def test_bitrix24_webhook_good_limited_scope_and_bad(
    db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph
) -> None:
    b24 = FakeBitrix24(B24_CODE)
    async with b24:
        await seed(db, crm_config("bitrix24", bitrix_url=f"{b24.url}/rest/1/{B24_CODE}/"))
        good = await qualibot("doctor", "--online")
        b24.scope_has_user = False
        scoped = await qualibot("doctor", "--online")
        b24.code = "a-newer-code"
        bad = await qualibot("doctor", "--online")
    assert good.code == 0 and "bitrix24 connection b24-main (127.0.0.1): Bitrix24 accepted the webhook" in good.out
    assert scoped.code == 0 and "its scope has no `user`, which is fine" in scoped.out
    assert bad.code == 1
    assert lines(bad.out, "ERROR") == [
        "ERROR  implants  bitrix24 connection b24-main (127.0.0.1): Bitrix24 rejected the webhook (HTTP 401, "
        "NO_AUTH_FOUND: Wrong authorization data)"
    ]
    assert B24_CODE not in good.out + scoped.out + bad.out  # the webhook URL is a secret


async def test_a_peer_that_does_not_answer_in_time_is_an_error(
    db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph
) -> None:
    meta.delay = 1.0
    await seed(db, clean_config())
    run = await qualibot("doctor", "--online", "--timeout", "0.2")
    assert run.code == 1
    assert lines(run.out, "ERROR") == [
        "ERROR  implants  Meta: could not check the token: no answer within 0.2 s"
    ]


async def test_offline_by_default(db: asyncpg.Pool, qualibot: Qualibot, meta: FakeMetaGraph) -> None:
    await seed(db, clean_config())
    run = await qualibot("doctor")
    assert run.code == 0 and meta.requests == []
