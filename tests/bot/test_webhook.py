"""The Evolution webhook through the real HTTP route and database: fixtures, auth, bad input, dedupe."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY

from tests.bot.conftest import CLOUD_SECRET, FIXTURES, VENEERS_AD, StartBot, load, text_message
from tests.seed import WEBHOOK_SECRET

CLID = "Affc9P3TLX9o7iBSwwqSi-6dEoQ1n2c3Kx8"
# the workspace keeps the peers' fixtures in shared/ beside the repository (CI too)
SHARED = Path(__file__).resolve().parents[3] / "shared" / "fixtures" / "evolution"

# file → (text, phone, role, media type, click id); None for a chat that is ignored
EXPECTED: dict[str, tuple[str, str, str, str | None, str | None] | None] = {
    "text-2.3.7.json": ("Hola, que venden?", "5491131376731", "client", None, None),
    "ctwa-text-2.3.7.json": ("Olá! Quero saber mais sobre isso.", "5511988887777", "client", None, CLID),
    "reply-with-context-2.3.7.json": ("Sim, quero agendar", "5511988887777", "client", None, None),
    "image-caption-2.3.7.json": ("foto do meu dente", "5511988887777", "client", "image", None),
    "audio-2.3.7.json": ("[audio]", "5511988887777", "client", "audio", None),
    "lid-2.3.6.json": ("Здравствуйте! Сколько стоит имплант?", "79161234567", "client", None, None),
    "cloud-api-channel.json": ("hola!", "541131376731", "client", None, None),
    "from-me-operator-2.3.7.json": ("Oi, aqui é a Ana, da recepção", "5511988887777", "operator", None, None),
    "group-2.3.7.json": None,
    "status-broadcast-2.3.7.json": None,
    # added here, from Evolution's source (fixtures/evolution/README.md)
    "send-message-2.3.7.json": (
        "Oi! Aqui é a Ana, da recepção. Posso ajudar com o agendamento?", "5511988887777", "operator", None, None),
    "image-base64-2.3.7.json": ("raio-x do dente", "5511988887777", "client", "image", None),
    "ctwa-opaque-2.3.7.json": ("Olá! Vi o anúncio, quero saber o preço.", "5511977776666", "client", None, None),
}
NOT_A_WEBHOOK = {"send-text-response.json"}  # what sendText answers; the fake Evolution serves it


def secret_for(body: dict[str, Any]) -> dict[str, str]:
    return {"X-Webhook-Secret": CLOUD_SECRET if body["instance"] == "clinic-cloud" else WEBHOOK_SECRET}


def jwt(secret: str, claims: dict[str, Any], alg: str = "HS256") -> str:
    def enc(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = enc(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = enc(json.dumps(claims).encode())
    sig = enc(hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest())
    return f"{head}.{body}.{sig}"


async def counts(db: asyncpg.Pool) -> dict[str, int]:
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in ("messages", "leads", "dialog_analysis", "jobs")}


def metric(result: str) -> float:
    return REGISTRY.get_sample_value("qualibot_webhooks_total", {"source": "evolution", "result": result}) or 0.0


def test_every_fixture_file_is_covered() -> None:
    local = {p.name for p in FIXTURES.glob("*.json")}
    assert local == set(EXPECTED) | NOT_A_WEBHOOK
    if SHARED.is_dir():  # the shared set grew: add the new payloads here
        assert {p.name for p in SHARED.glob("*.json")} <= local


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_fixture_through_the_route(name: str, start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load(name)
    expected = EXPECTED[name]
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body, headers=secret_for(body))
        assert await bot.drain() == (0 if expected is None else 1)
    assert status == 200, answer
    row = await seeded.fetchrow(
        """SELECT m.text, m.role, m.media_type, l.phone, l.is_lid, l.ctwa_clid, l.push_name,
                  d.client_message_count, d.bot_paused_until > now() AS paused, d.direction_id
           FROM messages m JOIN dialog_analysis d ON d.id = m.dialog_id JOIN leads l ON l.id = d.lead_id""")
    if expected is None:
        assert answer["status"] == "ignored"
        assert row is None and (await counts(seeded))["jobs"] == 0
        return
    text, phone, role, media, clid = expected
    assert answer == {"id": body["data"]["key"]["id"], "status": "stored"}
    assert (row["text"], row["phone"], row["role"], row["media_type"], row["ctwa_clid"]) == (
        text, phone, role, media, clid)
    assert row["is_lid"] is False and row["direction_id"] == "implants"
    if role == "operator":
        assert row["paused"] and row["client_message_count"] == 0 and row["push_name"] is None
    else:
        assert not row["paused"] and row["client_message_count"] == 1
        assert row["push_name"] == body["data"]["pushName"]
    job = await seeded.fetchrow("SELECT name, key, payload FROM jobs")
    assert job["name"] == "bot.dialog" and job["payload"]["dialog_id"] > 0


async def test_send_text_response_is_not_a_webhook(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(load("send-text-response.json"))
    assert status == 400 and answer["error"] == "not_an_evolution_event"
    assert "event" in answer["detail"]
    assert (await counts(seeded))["messages"] == 0


async def test_click_id_is_stored_with_its_ad_and_direction(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("ctwa-text-2.3.7.json")
    ad = body["data"]["contextInfo"]["externalAdReply"]
    ad["sourceId"] = VENEERS_AD
    async with start_bot(workers=False) as bot:
        assert (await bot.post(body))[0] == 200
        await bot.drain()
    lead = await seeded.fetchrow("SELECT * FROM leads")
    assert (lead["ctwa_clid"], lead["ad_source_id"], lead["ad_source_url"], lead["ad_title"],
            lead["ad_source_type"]) == (CLID, VENEERS_AD, "https://fb.me/5z9Rw6Obv", "Converse conosco", "ad")
    assert lead["direction_id"] == "veneers" and lead["referral_at"] is not None
    assert lead["referral"]["externalAdReply"]["ctwaClid"] == CLID
    assert await seeded.fetchval("SELECT direction_id FROM dialog_analysis") == "veneers"


@pytest.mark.parametrize("drain_each", [True, False], ids=["drained-one-by-one", "drained-in-one-batch"])
async def test_first_referral_wins(drain_each: bool, start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    phone = "5511988887777"
    first = load("ctwa-text-2.3.7.json")
    second = load("ctwa-text-2.3.7.json")
    second["data"]["key"]["id"] = "3A5C1B7E9D0F2A4C6E99"
    second["data"]["contextInfo"]["externalAdReply"].update({"ctwaClid": "LATER-CLICK", "sourceId": VENEERS_AD})
    async with start_bot(workers=False) as bot:
        for body in (text_message(phone, "oi", "PLAIN-1"), first, second):
            assert (await bot.post(body))[0] == 200
            if drain_each:
                await bot.drain()
        await bot.drain()
    lead = await seeded.fetchrow("SELECT ctwa_clid, ad_source_id, direction_id FROM leads")
    assert dict(lead) == {"ctwa_clid": CLID, "ad_source_id": "120239177205810192", "direction_id": "implants"}
    assert await seeded.fetchval("SELECT client_message_count FROM dialog_analysis") == 3


async def test_redelivery_changes_nothing(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("ctwa-text-2.3.7.json")
    async with start_bot(workers=False) as bot:
        assert (await bot.post(body))[0] == 200
        assert await bot.drain() == 1
        before = await counts(seeded)
        snapshot = await seeded.fetchrow(
            "SELECT d.*, l.*, j.run_at FROM dialog_analysis d, leads l, jobs j")
        status, answer = await bot.post(body, path="/webhooks/evolution/messages-upsert")
        assert await bot.drain() == 0
    assert (status, answer["status"]) == (200, "duplicate")
    assert await counts(seeded) == before
    assert await seeded.fetchrow("SELECT d.*, l.*, j.run_at FROM dialog_analysis d, leads l, jobs j") == snapshot


async def test_concurrent_redeliveries_store_one_message(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = text_message("79161234567", "Здравствуйте", "3EB0CONCURRENT")
    async with start_bot(workers=False) as bot:
        results = await asyncio.gather(*(bot.post(body) for _ in range(8)))
        assert await bot.drain() == 1
    assert sorted(a["status"] for _, a in results) == ["duplicate"] * 7 + ["stored"]
    assert await seeded.fetchval("SELECT client_message_count FROM dialog_analysis") == 1
    assert (await counts(seeded))["messages"] == 1


@pytest.mark.parametrize("path", ["/webhooks/evolution/messages-upsert", "/webhooks/evolution"])
async def test_config_style_event_name_and_slug(path: str, start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = text_message("79161234567", "Добрый день", "3EB0SLUG")
    body["event"] = "MESSAGES_UPSERT"
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body, path=path)
    assert (status, answer["status"]) == (200, "stored")


@pytest.mark.parametrize("event", ["messages.set", "messages.update", "connection.update", "QRCODE_UPDATED"])
async def test_other_events_are_answered_and_counted(event: str, start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("text-2.3.7.json")
    body["event"] = event
    before = metric("other_event")
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body, path="/webhooks/evolution/" + event.replace(".", "-"))
    assert (status, answer["status"]) == (200, "ignored")
    assert metric("other_event") == before + 1
    assert await counts(seeded) == {"messages": 0, "leads": 0, "dialog_analysis": 0, "jobs": 0}


async def test_bearer_jwt_signed_with_the_secret(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    now = int(time.time())
    token = jwt(WEBHOOK_SECRET, {"iat": now, "exp": now + 600, "app": "evolution", "action": "webhook"})
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(load("text-2.3.7.json"), headers={"Authorization": f"Bearer {token}"})
    assert (status, answer["status"]) == (200, "stored")


@pytest.mark.parametrize(("headers", "status", "error"), [
    ({}, 401, "missing_secret"),  # the fixture's apikey is null (AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=false)
    ({"X-Webhook-Secret": "wrong"}, 401, "invalid_secret"),
    ({"X-Webhook-Secret": CLOUD_SECRET}, 401, "invalid_secret"),  # another instance's secret
    ({"Authorization": "Bearer " + jwt("other-secret", {"exp": time.time() + 600})}, 401, "invalid_token"),
    ({"Authorization": "Bearer " + jwt(WEBHOOK_SECRET, {"exp": time.time() - 3600})}, 401, "invalid_token"),
    ({"Authorization": "Bearer " + jwt(WEBHOOK_SECRET, {}, alg="HS512")}, 401, "invalid_token"),
    ({"Authorization": "Bearer not-a-jwt"}, 401, "invalid_token"),
])
async def test_wrong_or_missing_credentials_write_nothing(
    headers: dict[str, str], status: int, error: str, start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    async with start_bot(workers=False) as bot:
        got, answer = await bot.post(load("text-2.3.7.json"), headers=headers)
    assert (got, answer["error"]) == (status, error)
    assert await counts(seeded) == {"messages": 0, "leads": 0, "dialog_analysis": 0, "jobs": 0}


async def test_unknown_instance_is_404(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("text-2.3.7.json")
    body["instance"] = "nobody"
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body)
    assert (status, answer["error"]) == (404, "unknown_instance")
    assert (await counts(seeded))["messages"] == 0


def _no_key() -> dict[str, Any]:
    body = load("text-2.3.7.json")
    del body["data"]["key"]
    return body


def _endless_chat_id() -> dict[str, Any]:
    return text_message("5" * 100, "oi", "3EB0ENDLESS")  # a phone JID no phone has


@pytest.mark.parametrize(("body", "error", "says"), [
    (b"", "empty_body", "empty"),
    (b"{not json", "invalid_json", "not valid JSON"),
    (b"\xff\xfe", "invalid_json", "not valid JSON"),
    (b"[1, 2]", "not_an_evolution_event", "JSON list"),
    (b'{"instance": "clinic-main"}', "not_an_evolution_event", "event"),
    (json.dumps(_no_key()).encode(), "not_an_evolution_event", "data.key"),
    (json.dumps(_endless_chat_id()).encode(), "not_an_evolution_event", "over 64 characters"),
])
async def test_bad_bodies_are_400_and_write_nothing(
    body: bytes, error: str, says: str, start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body)
    assert (status, answer["error"]) == (400, error)
    assert says in answer["detail"]
    assert await counts(seeded) == {"messages": 0, "leads": 0, "dialog_analysis": 0, "jobs": 0}


async def test_database_down_is_503(make_settings: Any, database_url: str, seeded: asyncpg.Pool) -> None:
    import aiohttp

    from qualibot.app import create_app
    from tests.helpers import refusing_pool, running

    app = create_app(make_settings(), pool=await refusing_pool())
    async with running(app) as url, aiohttp.ClientSession() as http:
        resp = await http.post(url + "/webhooks/evolution", json=load("text-2.3.7.json"),
                               headers={"X-Webhook-Secret": WEBHOOK_SECRET})
        assert resp.status == 503
        assert (await resp.json())["error"] == "database_unavailable"


async def test_a_batch_in_one_webhook(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("text-2.3.7.json")
    group = load("group-2.3.7.json")["data"]
    body["data"] = [body["data"], text_message("79161234567", "привет", "3EB0BATCH")["data"], group]
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body)
        assert await bot.drain() == 2
    assert status == 200
    assert sorted(m["status"] for m in answer["messages"]) == ["ignored", "stored", "stored"]
    assert (await counts(seeded))["dialog_analysis"] == 2


async def test_lost_database_connections_are_replaced_unseen(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        for i in range(4):
            assert (await bot.post(text_message("79161234567", "привет", f"3EB0WARM{i}")))[0] == 200
        killed = await seeded.fetchval(
            """SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
               WHERE datname = current_database() AND query LIKE '%INSERT INTO messages%'
                 AND pid <> pg_backend_pid()""")
        assert killed >= 1
        statuses = [(await bot.post(text_message("79161234567", "ещё", f"3EB0CONN{i}")))[0] for i in range(6)]
    assert statuses == [200] * 6
    assert await seeded.fetchval("SELECT count(*) FROM messages") == 10
