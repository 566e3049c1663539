"""The Evolution webhook as Evolution's own code sends it, through the real routes, database and drain.

The fake Evolution (`tests/fakes/evolution.py`) sends webhooks as `WebhookController.emit` does
(evolution-api 2.3.7 / 2.4.0-rc2 `src/api/integrations/event/webhook/webhook.controller.ts`): the
global webhook without any header and with the instance token as the body's `apikey`, a
per-instance webhook with its configured headers or `jwt_key` JWT, `byEvents` slugs, and
`send.message` after every sendText (`whatsapp.baileys.service.ts` `sendMessageWithTyping`).
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from typing import Any

import aiohttp
import asyncpg
import jwt as pyjwt
import pytest

from bot.routes import LARGE_BODIES
from tests.bot.conftest import Bot, StartBot, load, text_message
from tests.bot.test_reply import bot_messages, qualified
from tests.bot.test_webhook import counts
from tests.fakes.evolution import FakeEvolution, Webhook, evolution_jwt
from tests.helpers import wait_for
from tests.seed import B24_APP_TOKEN, WEBHOOK_SECRET

PHONE = "5511988887777"
API_KEY = "instance-api-key"  # clinic-main's api_key in tests/seed.py, the token the fake Evolution knows
NOTHING = {"messages": 0, "leads": 0, "dialog_analysis": 0, "jobs": 0}


def webhook_url(bot: Bot) -> str:
    return bot.url + "/webhooks/evolution"


async def paused(db: asyncpg.Pool) -> bool:
    return bool(await db.fetchval("SELECT COALESCE(bot_paused_until > now(), false) FROM dialog_analysis"))


# 12.1 the global webhook -------------------------------------------------------------------------

@pytest.mark.parametrize("by_events", [False, True], ids=["one-url", "by-events"])
async def test_global_webhook_authenticates_by_the_instance_token(
    by_events: bool, start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    async with start_bot(workers=False) as bot:
        fake_evo.webhook = Webhook(webhook_url(bot), is_global=True, by_events=by_events)
        status, answer = await fake_evo.emit("clinic-main", "messages.upsert", load("text-2.3.7.json")["data"])
        assert await bot.drain() == 1
    delivery = fake_evo.deliveries[0]
    assert "X-Webhook-Secret" not in delivery["headers"] and "Authorization" not in delivery["headers"]
    assert delivery["body"]["apikey"] == API_KEY
    assert (status, answer["status"]) == (200, "stored")
    assert await seeded.fetchval("SELECT text FROM messages") == "Hola, que venden?"


@pytest.mark.parametrize(("token", "expose", "error"), [
    ("another-instances-token", True, "invalid_apikey"),
    (API_KEY, False, "missing_secret"),  # AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=false: apikey null
])
async def test_global_webhook_without_the_right_token_is_401(
    token: str, expose: bool, error: str, start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    fake_evo.api_key = token
    async with start_bot(workers=False) as bot:
        fake_evo.webhook = Webhook(webhook_url(bot), is_global=True, expose_token=expose)
        status, answer = await fake_evo.emit("clinic-main", "messages.upsert", load("text-2.3.7.json")["data"])
    assert (status, answer["error"]) == (401, error)
    assert await counts(seeded) == NOTHING


# 12.2 per-instance webhooks and the jwt_key JWT --------------------------------------------------

@pytest.mark.parametrize("version", ["2.3.7", "2.4.0-rc2"])
@pytest.mark.parametrize("headers", [{"X-Webhook-Secret": WEBHOOK_SECRET}, {"jwt_key": WEBHOOK_SECRET}],
                         ids=["secret-header", "jwt_key"])
async def test_per_instance_webhook(
    version: str, headers: dict[str, str], start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    fake_evo.api_key = "not-exposed-or-wrong"  # the header or the JWT decides, not the body
    async with start_bot(workers=False) as bot:
        fake_evo.webhook = Webhook(webhook_url(bot), headers=headers, by_events=True, version=version)
        status, answer = await fake_evo.emit("clinic-main", "messages.upsert", load("text-2.3.7.json")["data"])
    assert (status, answer["status"]) == (200, "stored")
    sent = fake_evo.deliveries[0]["headers"]
    assert ("Authorization" in sent) == ("jwt_key" in headers) and "jwt_key" not in sent


@pytest.mark.parametrize(("signed_minutes_ago", "status"), [(0, 200), (20, 200), (45, 401)])
async def test_jwt_reused_on_retries_is_accepted_within_the_grace(
    signed_minutes_ago: int, status: int, start_bot: StartBot, seeded: asyncpg.Pool
) -> None:
    # Evolution signs once (exp = iat + 600) and retries for ~20 minutes with the same token
    token = evolution_jwt(WEBHOOK_SECRET, now=time.time() - signed_minutes_ago * 60)
    async with start_bot(workers=False) as bot:
        got, answer = await bot.post(load("text-2.3.7.json"), headers={"Authorization": f"Bearer {token}"})
    assert got == status, answer
    if status == 401:
        assert answer == {"error": "invalid_token", "detail": "the JWT has expired"}


async def test_jwt_grace_is_a_setting_and_exp_is_required(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    reused = evolution_jwt(WEBHOOK_SECRET, now=time.time() - 20 * 60)
    no_exp = pyjwt.encode({"iat": int(time.time()), "app": "evolution", "action": "webhook"}, WEBHOOK_SECRET, "HS256")
    async with start_bot(workers=False, jwt_grace_seconds=60) as bot:
        late = await bot.post(load("text-2.3.7.json"), headers={"Authorization": f"Bearer {reused}"})
        bare = await bot.post(load("text-2.3.7.json"), headers={"Authorization": f"Bearer {no_exp}"})
    assert late == (401, {"error": "invalid_token", "detail": "the JWT has expired"})
    assert bare == (401, {"error": "invalid_token", "detail": "the JWT has no exp claim"})
    assert await counts(seeded) == NOTHING


# 12.4 a byEvents URL configured with a trailing slash --------------------------------------------

@pytest.mark.parametrize("by_events", [True, False])
async def test_trailing_slash_in_the_configured_url(
    by_events: bool, start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    async with start_bot(workers=False) as bot:
        fake_evo.webhook = Webhook(webhook_url(bot) + "/", headers={"X-Webhook-Secret": WEBHOOK_SECRET},
                                   by_events=by_events)
        status, answer = await fake_evo.emit("clinic-main", "messages.upsert", load("text-2.3.7.json")["data"])
        assert await bot.drain() == 1
    expected = "/webhooks/evolution//messages-upsert" if by_events else "/webhooks/evolution/"
    assert fake_evo.deliveries[0]["url"] == bot.url + expected
    assert (status, answer["status"]) == (200, "stored")


# 12.3 send.message: operators sending through Evolution's API, and our own reply's echo -----------

async def test_a_message_sent_through_the_api_pauses_the_bot_and_our_echo_does_not(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    async with start_bot() as bot:
        fake_evo.webhook = Webhook(webhook_url(bot), headers={"jwt_key": WEBHOOK_SECRET}, by_events=True)
        await bot.post(text_message(PHONE, "Oi", "3EB0API1"))
        await qualified(bot, 1)
        await fake_evo.settle()  # the send.message echo of our reply
        assert not await paused(seeded)
        sent = await fake_evo.send_text("clinic-main", PHONE, "Oi, aqui é a Ana, pelo Chatwoot")  # an operator
        await fake_evo.settle()
        await qualified(bot, 2)
        await bot.post(text_message(PHONE, "Oi Ana, quero agendar", "3EB0API2"))
        await qualified(bot, 3)
    echo, operator = fake_evo.deliveries
    assert echo["url"].endswith("/webhooks/evolution/send-message") and echo["body"]["event"] == "send.message"
    assert echo["answer"] == {"id": fake_evo.sent_ids[0], "status": "echo"}
    assert operator["answer"] == {"id": sent["key"]["id"], "status": "stored"}
    roles = await seeded.fetch("SELECT role, text FROM messages ORDER BY id")
    assert [r["role"] for r in roles] == ["client", "bot", "operator", "client"]
    assert roles[2]["text"] == "Oi, aqui é a Ana, pelo Chatwoot"
    assert len(await bot_messages(seeded)) == 1  # no reply after the operator took over
    assert await paused(seeded)


async def test_an_echo_that_overtakes_the_send_answer_is_still_ours(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    fake_evo.echo_first = True  # send.message arrives while sendText still holds its answer
    async with start_bot() as bot:
        fake_evo.webhook = Webhook(webhook_url(bot), headers={"X-Webhook-Secret": WEBHOOK_SECRET})
        await bot.post(text_message(PHONE, "Oi", "3EB0RACE1"))
        await qualified(bot, 1)
        await bot.post(text_message(PHONE, "quanto custa?", "3EB0RACE2"))
        await qualified(bot, 2)
    assert [d["answer"]["status"] for d in fake_evo.deliveries] == ["echo", "echo"]
    assert [r["delivery_status"] for r in await bot_messages(seeded)] == ["sent", "sent"]
    assert not await paused(seeded)


async def test_send_message_fixture_through_the_slug(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("send-message-2.3.7.json")
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body, path="/webhooks/evolution/send-message")
        assert await bot.drain() == 1
    assert (status, answer["status"]) == (200, "stored")
    assert await seeded.fetchval("SELECT role FROM messages") == "operator"
    assert await paused(seeded)


# 14.7 our reply records are out of a sender's reach ----------------------------------------------

async def test_a_client_message_id_cannot_pass_for_another_chats_reply(
    start_bot: StartBot, seeded: asyncpg.Pool, fake_evo: FakeEvolution
) -> None:
    victim, attacker = PHONE, "5511977776666"
    async with start_bot(workers=False) as bot:
        await bot.post(text_message(victim, "Oi, quero um orçamento", "3EB0VICTIM1"))
        await bot.drain()
        row = await seeded.fetchrow("SELECT dialog_id, id FROM messages")
        # the key the reply record used to have: `qb-<dialog>-<last client message>`
        forged = text_message(attacker, "oi", f"qb-{row['dialog_id']}-{row['id']}")
        assert (await bot.post(forged))[1]["status"] == "stored"
        await bot.drain()
    async with start_bot() as bot:
        await qualified(bot, 2)
    numbers = sorted(r["json"]["number"] for r in fake_evo.requests)
    assert numbers == sorted([victim, attacker])  # both chats answered


async def test_one_reply_per_burst_whatever_reruns(start_bot: StartBot, seeded: asyncpg.Pool,
                                                   fake_evo: FakeEvolution) -> None:
    async with start_bot() as bot:
        await bot.post(text_message(PHONE, "Oi", "3EB0ONCE1"))
        await qualified(bot, 1)
        dialog_id = await seeded.fetchval("SELECT id FROM dialog_analysis")
        await seeded.execute("""INSERT INTO jobs (name, key, payload, run_at)
                                VALUES ('bot.dialog', 'rerun', jsonb_build_object('dialog_id', $1::bigint), now())""",
                             dialog_id)
        await qualified(bot, 2)
    [reply] = await bot_messages(seeded)
    assert reply["reply_to"] == await seeded.fetchval("SELECT id FROM messages WHERE role = 'client'")
    assert reply["message_id"] != f"qb-{dialog_id}-{reply['reply_to']}" and len(fake_evo.requests) == 1


# 12.10 base64 media ------------------------------------------------------------------------------

def base64_body(size: int) -> dict[str, Any]:
    body = copy.deepcopy(load("image-base64-2.3.7.json"))
    body["data"]["message"]["base64"] = "QUJD" * (size // 4)
    return body


async def test_large_base64_media_is_accepted_and_never_stored(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = base64_body(3 * 1024 * 1024)  # over QUALIBOT_MAX_BODY_BYTES (1 MiB), as real photos are
    ad = copy.deepcopy(load("ctwa-text-2.3.7.json")["data"]["contextInfo"])
    body["data"]["message"]["imageMessage"]["contextInfo"] = ad  # the referral is stored, the media not
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body)
        assert await bot.drain() == 1
    assert (status, answer["status"]) == (200, "stored")
    assert await seeded.fetchval("SELECT text FROM messages") == "raio-x do dente"
    assert await seeded.fetchval("SELECT ctwa_clid FROM leads") is not None
    for table in ("messages", "leads", "dialog_analysis", "jobs"):
        assert not await seeded.fetchval(f"SELECT count(*) FROM {table} t WHERE t::text LIKE '%QUJDQUJD%'"), table


async def test_over_the_evolution_limit_is_413(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = json.dumps(base64_body(300 * 1024)).encode()

    async def chunked() -> Any:  # no Content-Length: the limit holds while reading
        for i in range(0, len(body), 65536):
            yield body[i:i + 65536]

    async with start_bot(workers=False, evolution_max_body_bytes=256 * 1024) as bot:
        announced = await bot.post(body)
        async with bot.http.post(bot.url + "/webhooks/evolution", data=chunked(),
                                 headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as resp:
            streamed = resp.status, await resp.json()
        fits = await bot.post(base64_body(200 * 1024))
    for status, answer in (announced, streamed):
        assert (status, answer["error"]) == (413, "body_too_large")
        assert "262144 bytes" in answer["detail"] and "QUALIBOT_EVOLUTION_MAX_BODY_BYTES" in answer["detail"]
    assert fits[0] == 200
    assert (await counts(seeded))["messages"] == 1


def trickle(body: bytes, more: asyncio.Event) -> Any:
    """The body without a Content-Length, its first 64 KiB at once and the rest when `more` is set."""
    async def chunks() -> Any:
        yield body[:65536]
        await more.wait()
        yield body[65536:]
    return chunks()


async def test_large_bodies_are_read_a_few_at_a_time_and_text_goes_on(
    start_bot: StartBot, seeded: asyncpg.Pool,
) -> None:
    """A large body is read before the request is authenticated (the instance is named in it). A
    client trickling one without a header credential (as the global webhook sends) holds one of
    `evolution_large_bodies` anonymous slots: another such body gets 503 (Evolution retries it),
    while a per-instance webhook's large body, with its secret, still has its own slots, text
    messages are served, and the slot is free again afterwards."""
    global_photo = base64_body(2 * 1024 * 1024)  # over QUALIBOT_MAX_BODY_BYTES
    global_photo["apikey"] = API_KEY  # how the global webhook authenticates (AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES)
    raw = json.dumps(global_photo).encode()
    more = asyncio.Event()

    async with start_bot(workers=False, evolution_large_bodies=1) as bot:
        async def post_trickled() -> tuple[int, Any]:
            async with bot.http.post(webhook_url(bot), data=trickle(raw, more), headers={}) as resp:
                return resp.status, await resp.json()

        slow = asyncio.create_task(post_trickled())
        assert bot.app is not None
        reading = bot.app[LARGE_BODIES].reading

        async def anonymous_slot_taken() -> bool:
            return reading["anonymous"] == 1

        await wait_for(anonymous_slot_taken, what="the trickled body being read")
        busy = await bot.post(raw, headers={})  # another large body without a header credential
        signed_photo = base64_body(2 * 1024 * 1024)
        signed_photo["data"]["key"]["id"] = "3EB0SIGNEDPHOTO1"
        signed = await bot.post(signed_photo)  # a per-instance webhook, X-Webhook-Secret: its own slots
        text = await bot.post(text_message(PHONE, "Olá", "3EB0LARGE0001"))
        more.set()
        trickled_back = await slow
        after = await bot.post(raw, headers={})
    assert busy[0] == 503 and busy[1]["error"] == "busy" and "QUALIBOT_EVOLUTION_LARGE_BODIES" in busy[1]["detail"]
    assert signed[0] == 200 and signed[1]["status"] == "stored"
    assert text[0] == 200 and text[1]["status"] == "stored"
    assert trickled_back[0] == 200 and trickled_back[1]["status"] == "stored"
    assert after[0] == 200 and after[1]["status"] == "duplicate"  # the photo's message id, stored once
    assert (await counts(seeded))["messages"] == 3


@pytest.mark.parametrize(("headers", "code"), [
    ({"X-Webhook-Secret": "not-the-secret-of-anyone"}, "invalid_secret"),
    ({"Authorization": "Bearer " + pyjwt.encode({"exp": int(time.time()) + 600}, "another-key-" + "x" * 20)},
     "invalid_token"),
], ids=["secret", "jwt"])
async def test_a_large_body_with_a_stranger_credential_is_refused_before_it_is_read(
    headers: dict[str, str], code: str, start_bot: StartBot, seeded: asyncpg.Pool,
) -> None:
    raw = json.dumps(base64_body(2 * 1024 * 1024)).encode()
    more = asyncio.Event()  # never set: the body is never sent whole, so only an early answer comes back
    async with start_bot(workers=False, evolution_large_bodies=1) as bot:
        async with bot.http.post(webhook_url(bot), data=trickle(raw, more), headers=headers) as resp:
            status, answer = resp.status, await asyncio.wait_for(resp.json(), timeout=10)
        more.set()
        assert bot.app is not None and sum(bot.app[LARGE_BODIES].reading.values()) == 0
    assert (status, answer["error"]) == (401, code)
    assert "no configured instance" in answer["detail"] or "any configured instance" in answer["detail"]
    assert await counts(seeded) == NOTHING


async def test_a_large_body_with_the_instances_jwt_is_read_and_stored(
    start_bot: StartBot, seeded: asyncpg.Pool,
) -> None:
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(base64_body(2 * 1024 * 1024),
                                        headers={"Authorization": f"Bearer {evolution_jwt(WEBHOOK_SECRET)}"})
    assert (status, answer["status"]) == (200, "stored")


async def test_a_large_body_of_an_instance_configured_seconds_ago_is_read(
    start_bot: StartBot, seeded: asyncpg.Pool,
) -> None:
    """The secrets are cached for a few seconds; a 401 is final for Evolution, so a secret that is not
    among them yet is looked for once more before the body is refused."""
    async with start_bot(workers=False) as bot:
        assert (await bot.post(base64_body(2 * 1024 * 1024)))[0] == 200  # the secrets are cached now
        fresh_secret = "a-new-instance-secret-0123456789"
        await seeded.execute(
            """INSERT INTO whatsapp_instances (name, account_id, api_url, api_key, webhook_secret, channel)
               VALUES ('clinic-new', 'clinic', 'http://127.0.0.1:9', 'new-key', $1, 'evolution')""", fresh_secret)
        photo = base64_body(2 * 1024 * 1024)
        photo["instance"] = "clinic-new"
        status, answer = await bot.post(photo, headers={"X-Webhook-Secret": fresh_secret})
    assert (status, answer["status"]) == (200, "stored")


async def test_other_routes_keep_their_own_limit(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    form = {"event": "ONCRMDEALUPDATE", "data[FIELDS][ID]": "1", "auth[application_token]": B24_APP_TOKEN,
            "padding": "x" * (2 * 1024 * 1024)}
    async with start_bot(workers=False) as bot, aiohttp.ClientSession() as http:
        async with http.post(bot.url + "/webhooks/bitrix24/b24-main", data=form) as resp:
            assert resp.status == 413
            assert (await resp.json())["error"] == "body_too_large"


# 12.11 one bad message in a batch ----------------------------------------------------------------

async def test_one_bad_message_in_a_batch_does_not_drop_the_others(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    body = load("text-2.3.7.json")
    unreadable = {"key": {"id": "3EB0BROKEN", "remoteJid": "not-a-chat"}, "message": {"conversation": "?"}}
    second = text_message("79161234567", "привет", "3EB0BATCH2")["data"]
    body["data"] = [body["data"], unreadable, second, copy.deepcopy(second)]
    async with start_bot(workers=False) as bot:
        status, answer = await bot.post(body)
        assert await bot.drain() == 2
        all_bad = copy.deepcopy(body)
        all_bad["data"] = [unreadable, {"key": {}}]
        bad_status, bad_answer = await bot.post(all_bad)
    assert status == 200
    assert answer["messages"] == [
        {"id": "AC37559D8001E5AD80AABD8E0BB9B006", "status": "stored"},
        {"id": "3EB0BROKEN", "status": "invalid", "reason": "data.key.remoteJid is not a WhatsApp chat id"},
        {"id": "3EB0BATCH2", "status": "stored"},
        {"id": "3EB0BATCH2", "status": "duplicate"},
    ]
    assert (await counts(seeded))["dialog_analysis"] == 2
    assert (bad_status, bad_answer["error"]) == (400, "not_an_evolution_event")
    assert "none of the 2 messages can be read" in bad_answer["detail"]
    assert (await counts(seeded))["messages"] == 2


# 12.9 (parse half) Baileys' opaque ad fields are recorded on the message --------------------------

async def test_opaque_ad_fields_are_recorded_on_the_message(start_bot: StartBot, seeded: asyncpg.Pool) -> None:
    async with start_bot(workers=False) as bot:
        for name in ("ctwa-opaque-2.3.7.json", "text-2.3.7.json"):
            assert (await bot.post(load(name)))[0] == 200
        await bot.drain()
    rows = await seeded.fetch("SELECT contact, ad_opaque FROM messages ORDER BY id")
    assert [(r["contact"], r["ad_opaque"]) for r in rows] == [("5511977776666", True), ("5491131376731", False)]
