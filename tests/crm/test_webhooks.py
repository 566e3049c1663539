"""The webhook endpoints: what is accepted is stored with one sync per entity; what is not is
answered 4xx with the reason and writes nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from core.settings import Settings
from qualibot.app import create_app
from tests.crm.support import amo_path, b24_path, body, post, written
from tests.helpers import refusing_pool, running
from tests.seed import AMO_SECRET, seed, tenant_config

AMO_ACCOUNT = "account[subdomain]=clinic&account[id]=17769199"


@pytest.fixture
async def client(db: asyncpg.Pool, make_settings: Callable[..., Settings]
                 ) -> AsyncIterator[tuple[aiohttp.ClientSession, str]]:
    await seed(db, tenant_config(capi_source="crm", crm_connection="amo-main"))
    app = create_app(make_settings(crm_sync_delay_seconds=30), pool=db)
    async with running(app) as url, aiohttp.ClientSession() as session:
        yield session, url


async def test_amocrm_fixture_add_lead_is_stored_with_one_sync(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    status, answer = await post(session, url + amo_path(), body("amocrm/webhook-add-lead.txt"))
    assert status == 200 and answer == {"ok": True, "events": 1, "syncs": 1, "ignored": []}
    event = await db.fetchrow("SELECT * FROM webhook_events")
    assert (event["source"], event["connection_id"], event["event"], event["entity_type"], event["entity_id"]) \
        == ("amocrm", "amo-main", "leads.add", "lead", "1190401")
    assert event["payload"]["entity"]["name"] == "Заявка из WhatsApp"
    job = await db.fetchrow("SELECT * FROM jobs")
    assert job["name"] == "crm.sync" and job["key"] == "amo-main:lead:1190401"
    assert job["payload"] == {"connection_id": "amo-main", "entity_type": "lead", "entity_id": "1190401"}


@pytest.mark.parametrize(
    ("fixture", "entities"),
    [
        ("amocrm/webhook-update-two-leads.txt",
         [("leads.update", "lead", "1190401"), ("leads.update", "lead", "1190402")]),
        ("amocrm/webhook-status-lead.txt", [("leads.status", "lead", "10701093")]),
        ("amocrm/webhook-update-contact.txt", [("contacts.update", "contact", "148775")]),
    ],
)
async def test_amocrm_fixtures_store_every_entity(client: Any, db: asyncpg.Pool, fixture: str,
                                                  entities: list[tuple[str, str, str]]) -> None:
    session, url = client
    status, _ = await post(session, url + amo_path(), body(fixture))
    assert status == 200
    rows = await db.fetch("SELECT event, entity_type, entity_id FROM webhook_events ORDER BY id")
    assert [tuple(r) for r in rows] == entities
    keys = await db.fetch("SELECT key FROM jobs ORDER BY key")
    assert [r["key"] for r in keys] == [f"amo-main:{t}:{i}" for _, t, i in entities]


async def test_companies_arrive_under_contacts_and_deletions_are_not_synced(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    form = ("contacts[update][0][id]=555&contacts[update][0][type]=company"
            "&leads[delete][0][id]=77&leads[delete][0][status_id]=143&" + AMO_ACCOUNT)
    status, answer = await post(session, url + amo_path(), form)
    assert status == 200 and answer["events"] == 2 and answer["syncs"] == 1
    rows = await db.fetch("SELECT event, entity_type, entity_id FROM webhook_events ORDER BY event")
    assert [tuple(r) for r in rows] == [("contacts.update", "company", "555"), ("leads.delete", "lead", "77")]
    assert [r["key"] for r in await db.fetch("SELECT key FROM jobs")] == ["amo-main:company:555"]


async def test_a_burst_for_one_lead_is_one_sync(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    for _ in range(3):
        status, _ = await post(session, url + amo_path(), body("amocrm/webhook-add-lead.txt"))
        assert status == 200
    assert await written(db) == (3, 1)


async def test_sections_without_field_changes_are_acknowledged_and_ignored(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    status, answer = await post(session, url + amo_path(),
                                "task[add][0][id]=1&leads[note][0][note][element_id]=5&" + AMO_ACCOUNT)
    assert status == 200 and answer["ignored"] == ["task[add]", "leads[note]"]
    assert await written(db) == (0, 0)


async def test_the_account_may_be_named_by_subdomain_alone(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    status, _ = await post(session, url + amo_path(), "leads[update][0][id]=9&account[subdomain]=Clinic")
    assert status == 200 and await written(db) == (1, 1)


@pytest.mark.parametrize(
    ("path", "data", "content_type", "status", "code"),
    [
        (amo_path("nope"), body("amocrm/webhook-add-lead.txt"), None, 404, "unknown_connection"),
        (amo_path("b24-main"), body("amocrm/webhook-add-lead.txt"), None, 404, "unknown_connection"),
        (amo_path(secret="wrong-secret"), body("amocrm/webhook-add-lead.txt"), None, 401, "invalid_secret"),
        (amo_path(), "leads[add][0][id]=1&account[id]=999&account[subdomain]=other", None, 401, "account_mismatch"),
        (amo_path(), "leads[add][0][id]=1", None, 400, "missing_account"),
        (amo_path(), '{"leads": {"add": [{"id": 1}]}}', "application/json", 400, "not_form_encoded"),
        (amo_path(), "", None, 400, "empty_body"),
        (amo_path(), "leads[add][0][id]=1&leads[add]=2&" + AMO_ACCOUNT, None, 400, "invalid_form"),
        (amo_path(), AMO_ACCOUNT, None, 400, "no_entities"),
        (amo_path(), "leads[add][0][name]=x&" + AMO_ACCOUNT, None, 400, "invalid_entity"),
        (amo_path(), "leads[update][0][id]=1&leads[update][1][id]=abc&" + AMO_ACCOUNT, None, 400, "invalid_entity"),
        (b24_path("nope"), body("bitrix24/webhook-deal-update.txt"), None, 404, "unknown_connection"),
        (b24_path("amo-main"), body("bitrix24/webhook-deal-update.txt"), None, 404, "unknown_connection"),
        (b24_path(), body("bitrix24/webhook-deal-update.txt").replace(b"ozas", b"ozaX"), None, 401,
         "invalid_application_token"),
        (b24_path(), "event=ONCRMDEALUPDATE&data[FIELDS][ID]=759", None, 401, "invalid_application_token"),
        (b24_path(), "data[FIELDS][ID]=759&auth[application_token]=jvh9y1ulvt2m6k5or90v9mg8nn32ozas", None, 400,
         "missing_event"),
        (b24_path(), "event=ONTASKADD&data[FIELDS][ID]=1&auth[application_token]=jvh9y1ulvt2m6k5or90v9mg8nn32ozas",
         None, 400, "unsupported_event"),
        (b24_path(), "event=ONCRMDEALUPDATE&auth[application_token]=jvh9y1ulvt2m6k5or90v9mg8nn32ozas", None, 400,
         "missing_id"),
    ],
)
async def test_rejections_write_nothing(client: Any, db: asyncpg.Pool, path: str, data: bytes | str,
                                        content_type: str | None, status: int, code: str) -> None:
    session, url = client
    got, answer = await post(session, url + path, data, content_type or "application/x-www-form-urlencoded")
    assert (got, answer["error"]) == (status, code)
    assert answer["detail"]
    assert await written(db) == (0, 0)


@pytest.mark.parametrize(
    ("fixture", "event", "entity"),
    [
        ("bitrix24/webhook-deal-update.txt", "ONCRMDEALUPDATE", ("deal", "759")),
        ("bitrix24/webhook-lead-update.txt", "ONCRMLEADUPDATE", ("lead", "311")),
    ],
)
async def test_bitrix24_fixtures_are_stored_without_the_token(client: Any, db: asyncpg.Pool, fixture: str,
                                                              event: str, entity: tuple[str, str]) -> None:
    session, url = client
    status, answer = await post(session, url + b24_path(), body(fixture))
    assert status == 200 and answer == {"ok": True, "events": 1, "syncs": 1}
    row = await db.fetchrow("SELECT * FROM webhook_events")
    assert (row["source"], row["event"], row["entity_type"], row["entity_id"]) == ("bitrix24", event, *entity)
    assert row["payload"]["auth"] == {"domain": "clinic.bitrix24.ru", "member_id": "d897063e1ce7c5eb9f04b9751eef5915",
                                      "client_endpoint": "https://clinic.bitrix24.ru/rest/",
                                      "server_endpoint": "https://oauth.bitrix.info/rest/"}
    assert "jvh9y1ulvt2m6k5or90v9mg8nn32ozas" not in str(row["payload"])
    assert await db.fetchval("SELECT key FROM jobs") == f"b24-main:{entity[0]}:{entity[1]}"


async def test_bitrix24_deletion_is_stored_not_synced(client: Any, db: asyncpg.Pool) -> None:
    session, url = client
    data = body("bitrix24/webhook-deal-update.txt").replace(b"ONCRMDEALUPDATE", b"ONCRMDEALDELETE")
    status, answer = await post(session, url + b24_path(), data)
    assert status == 200 and answer["syncs"] == 0
    assert await written(db) == (1, 0)


async def test_answers_are_counted_in_metrics(client: Any) -> None:
    session, url = client
    await post(session, url + amo_path(secret="wrong-secret"), body("amocrm/webhook-add-lead.txt"))
    await post(session, url + b24_path(), body("bitrix24/webhook-deal-update.txt"))
    async with session.get(url + "/metrics") as resp:
        metrics = await resp.text()
    assert 'qualibot_webhooks_total{result="unauthorized",source="amocrm"}' in metrics
    assert 'qualibot_webhooks_total{result="accepted",source="bitrix24"}' in metrics


async def test_database_down_is_503_and_the_secret_stays_out_of_logs(
    database_url: str, make_settings: Callable[..., Settings]
) -> None:
    app = create_app(make_settings(), pool=await refusing_pool())
    async with running(app) as url, aiohttp.ClientSession() as session:
        with capture_logs() as logs:
            status, answer = await post(session, url + amo_path(), body("amocrm/webhook-add-lead.txt"))
    assert (status, answer["error"]) == (503, "database_unavailable")  # amoCRM will retry it
    assert [e["path"] for e in logs if e["event"] == "http.database_unavailable"] == [
        "/webhooks/amocrm/{connection_id}/{webhook_secret}"]
    assert AMO_SECRET not in repr(logs)


B24_AUTH = "auth[application_token]=jvh9y1ulvt2m6k5or90v9mg8nn32ozas"


@pytest.mark.parametrize(
    ("path", "data", "code", "says"),
    [
        # one key of a megabyte: refused for its length before it is split (it was quadratic: 25 s)
        (b24_path(), "event=ONCRMDEALUPDATE&data" + "[x]" * 300_000 + "=1&" + B24_AUTH, "invalid_form",
         "longer than 512"),
        (b24_path(), "event=ONCRMDEALUPDATE&a" + "[b]" * 13 + "=1&" + B24_AUTH, "invalid_form", "deeper than 12"),
        (b24_path(), "&".join(f"f{i}=1" for i in range(50_001)) + "&" + B24_AUTH, "invalid_form",
         "Max number of fields"),
        (b24_path(), "event=ONCRMDEALUPDATE&data[FIELDS][ID]=²&" + B24_AUTH, "missing_id", "not a number"),
        (b24_path(), "event=ONCRMDEALUPDATE&data[FIELDS][ID]=٧٥٩&" + B24_AUTH, "missing_id", "not a number"),
        (b24_path(), "event=ONCRMDEALUPDATE&data[FIELDS][ID]=" + "9" * 100_000 + "&" + B24_AUTH, "missing_id",
         "not a number"),
        (amo_path(), "leads[update][²][id]=1&" + AMO_ACCOUNT, "invalid_entity", "index is not a number"),
        (amo_path(), "leads[update][0][id]=1&leads[update][²][id]=2&" + AMO_ACCOUNT, "invalid_entity",
         "index is not a number"),
        (amo_path(), "leads[update][0][id]=²&" + AMO_ACCOUNT, "invalid_entity", "not a number"),
        (amo_path(), "leads[update][0][id]=1&" + "x" * 600 + "=1&" + AMO_ACCOUNT, "invalid_form", "longer than 512"),
    ],
)
async def test_hostile_forms_are_400_with_the_reason_and_write_nothing(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], path: str, data: str, code: str, says: str
) -> None:
    await seed(db, tenant_config(capi_source="crm", crm_connection="amo-main"))
    # a limit above the 1 MiB default: these bodies reach the parsers, as they would on a server configured so
    app = create_app(make_settings(crm_sync_delay_seconds=30, max_body_bytes=8 << 20, form_max_fields=50_000),
                     pool=db)
    async with running(app) as url, aiohttp.ClientSession() as session:
        status, answer = await post(session, url + path, data)
    assert (status, answer["error"]) == (400, code), answer
    assert says in str(answer["detail"])
    assert await written(db) == (0, 0)
