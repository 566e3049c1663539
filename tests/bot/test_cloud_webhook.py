"""Meta's WhatsApp Cloud API webhook (`/webhooks/whatsapp-cloud`): verification, signature, the
documented bodies (tests/bot/fixtures/cloud/README.md), redelivery, and every refusal writing nothing."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg
import pytest
from structlog.testing import capture_logs

from bot import privacy
from bot.drain import drain
from core.settings import Settings
from qualibot.app import create_app
from tests.bot.cli import qualibot
from tests.fakes.cloud_webhook import (
    APP_SECRET,
    NUMBER_ID,
    PATH,
    VERIFY_TOKEN,
    echo_body,
    encode,
    fixture_body,
    post,
    text_body,
    with_cloud_number,
)
from tests.helpers import running
from tests.seed import seed, tenant_config

PHONE = "16505551234"
CLID = "Aff-n8ZTODiE79d22KtAwQKj9e"
AD = "120239177205810192"  # the seeded direction's ad


@dataclass
class App:
    url: str
    http: aiohttp.ClientSession
    db: asyncpg.Pool
    settings: Settings

    async def counts(self) -> dict[str, int]:
        """Rows a webhook may write: "nothing written" compares these."""
        row = await self.db.fetchrow(
            """SELECT (SELECT count(*) FROM messages)::int AS messages,
                      (SELECT count(*) FROM whatsapp_cloud_notices)::int AS notices,
                      (SELECT count(*) FROM messages WHERE peer_status IS NOT NULL)::int AS statuses""")
        assert row is not None
        return dict(row)


@pytest.fixture
def cloud_app(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> Callable[[], Any]:
    @asynccontextmanager
    async def start() -> AsyncIterator[App]:
        await seed(db, with_cloud_number(tenant_config()))
        settings = make_settings()
        async with running(create_app(settings, pool=db, with_workers=False)) as url, \
                aiohttp.ClientSession() as http:
            yield App(url, http, db, settings)

    return start


async def test_meta_verification_echoes_the_challenge_only_for_a_configured_token(cloud_app: Any) -> None:
    async with cloud_app() as app:
        query = {"hub.mode": "subscribe", "hub.verify_token": VERIFY_TOKEN, "hub.challenge": "1158201444"}
        async with app.http.get(app.url + PATH, params=query) as resp:
            assert (resp.status, await resp.text(), resp.content_type) == (200, "1158201444", "text/plain")
        for wrong in ({"hub.verify_token": "someone-elses-token-0000"}, {"hub.mode": "unsubscribe"},
                      {"hub.challenge": ""}):
            async with app.http.get(app.url + PATH, params={**query, **wrong}) as resp:
                assert resp.status == 403
                assert "1158201444" not in await resp.text()


async def test_a_signed_ad_message_is_stored_once_and_linked_to_its_lead(cloud_app: Any) -> None:
    async with cloud_app() as app:
        body = text_body(PHONE, "Hi! I saw your ad", "wamid.AD1", clid=CLID, ad_id=AD)
        status, answer = await post(app.http, app.url, body)
        assert status == 200, answer
        assert answer["results"] == [{"id": "wamid.AD1", "status": "stored"}]
        status, answer = await post(app.http, app.url, body)  # Meta redelivers for days
        assert (status, answer["results"][0]["status"]) == (200, "duplicate")
        assert (await app.counts())["messages"] == 1
        await drain(app.db, app.settings)
        lead = await app.db.fetchrow("SELECT * FROM leads WHERE phone = $1", PHONE)
        assert lead["instance_name"] == f"cloud-{NUMBER_ID}"
        assert (lead["ctwa_clid"], lead["ad_source_id"], lead["direction_id"]) == (CLID, AD, "implants")
        assert lead["push_name"] == "Sheena Nelson"
        assert lead["ad_title"] == "Smile Clinic implants"  # the referral's headline
        dialog = await app.db.fetchrow("SELECT * FROM dialog_analysis WHERE contact_phone = $1", PHONE)
        assert dialog["client_message_count"] == 1


async def test_first_referral_wins_across_webhooks(cloud_app: Any) -> None:
    async with cloud_app() as app:
        for n, clid in enumerate([CLID, "Aff-a-later-click-0000"]):
            status, _ = await post(app.http, app.url, text_body(PHONE, f"msg {n}", f"wamid.R{n}", clid=clid))
            assert status == 200
            await drain(app.db, app.settings)
        assert await app.db.fetchval("SELECT ctwa_clid FROM leads WHERE phone = $1", PHONE) == CLID
        assert await app.db.fetchval("SELECT count(*) FROM dialog_analysis") == 1


async def test_media_captions_and_button_replies_become_text(cloud_app: Any) -> None:
    async with cloud_app() as app:
        status, answer = await post(app.http, app.url, fixture_body("media-and-replies.json"))
        assert status == 200
        assert [r["status"] for r in answer["results"]] == ["stored", "stored", "stored", "ignored"]
        rows = await app.db.fetch("SELECT text, media_type FROM messages ORDER BY id")
        assert [(r["text"], r["media_type"]) for r in rows] == [
            ("this tooth", "image"), ("[audio]", "audio"), ("Tuesday 10:00", None)]


@pytest.mark.parametrize("header", [None, "sha256=" + "0" * 64, "sha1=abc", "sha256=not-hex"])
async def test_a_bad_signature_is_401_and_writes_nothing(cloud_app: Any, header: str | None) -> None:
    async with cloud_app() as app:
        headers = {} if header is None else {"X-Hub-Signature-256": header}
        async with app.http.post(app.url + PATH, data=encode(text_body(PHONE, "hi", "wamid.SIG")),
                                 headers=headers) as resp:
            assert resp.status == 401
            assert (await resp.json())["error"] == "bad_signature"
        assert (await app.counts())["messages"] == 0


async def test_a_body_signed_with_another_apps_secret_is_401(cloud_app: Any) -> None:
    async with cloud_app() as app:
        status, answer = await post(app.http, app.url, text_body(PHONE, "hi", "wamid.X"),
                                    secret="another-apps-secret-000000000000")
        assert (status, answer["error"]) == (401, "bad_signature")
        assert (await app.counts())["messages"] == 0


async def test_a_number_configured_seconds_ago_with_its_own_app_secret_is_accepted(cloud_app: Any) -> None:
    """The app secrets are cached for a few seconds; a 401 is final for Meta's delivery of that
    message, so a signature that matches none of them is checked once more against a fresh read."""
    async with cloud_app() as app:
        assert (await post(app.http, app.url, text_body(PHONE, "hi", "wamid.OLD")))[0] == 200  # cached now
        cfg = with_cloud_number(with_cloud_number(tenant_config()), number_id="106540352249999")
        cfg["accounts"][0]["whatsapp_cloud_numbers"][1]["app_secret"] = "a-second-meta-apps-secret-0000"
        await seed(app.db, cfg)
        status, answer = await post(app.http, app.url, text_body(PHONE, "hi", "wamid.NEW", number_id="106540352249999"),
                                    secret="a-second-meta-apps-secret-0000")
        assert (status, answer["results"]) == (200, [{"id": "wamid.NEW", "status": "stored"}])


async def test_an_unknown_phone_number_id_is_404_and_writes_nothing(cloud_app: Any) -> None:
    async with cloud_app() as app:
        known = text_body(PHONE, "hi", "wamid.K1")
        unknown = text_body(PHONE, "hi", "wamid.U1", number_id="999000111")
        known["entry"].extend(unknown["entry"])  # one known change, one unknown: nothing of either is kept
        status, answer = await post(app.http, app.url, known)
        assert (status, answer["error"]) == (404, "unknown_phone_number_id")
        assert "999000111" in answer["detail"]
        assert (await app.counts())["messages"] == 0


@pytest.mark.parametrize(("raw", "error"), [
    (b"not json", "invalid_json"),
    (b'{"object": "page", "entry": [{}]}', "not_a_whatsapp_cloud_webhook"),
    (b'{"object": "whatsapp_business_account", "entry": []}', "not_a_whatsapp_cloud_webhook"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"messages": []}}]}]}',
     "not_a_whatsapp_cloud_webhook"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"metadata": '
     b'{"phone_number_id": "1; DROP"}}}]}]}', "not_a_whatsapp_cloud_webhook"),
    (b'{"object": "whatsapp_business_account", "entry": [{"changes": [{"value": {"metadata": '
     b'{"phone_number_id": "106540352242922"}, "statuses": [{"id": "w", "status": "exploded"}]}}]}]}',
     "not_a_whatsapp_cloud_webhook"),
])
async def test_bad_bodies_are_400_with_what_is_wrong_and_write_nothing(cloud_app: Any, raw: bytes, error: str) -> None:
    async with cloud_app() as app:
        status, answer = await post(app.http, app.url, None, raw=raw)
        assert (status, answer["error"]) == (400, error), answer
        assert answer["detail"]
        assert await app.counts() == {"messages": 0, "notices": 0, "statuses": 0}


async def test_statuses_are_recorded_on_our_reply_and_a_failure_says_why(cloud_app: Any) -> None:
    async with cloud_app() as app:
        await post(app.http, app.url, text_body(PHONE, "hi", "wamid.C1"))
        await drain(app.db, app.settings)
        dialog_id = await app.db.fetchval("SELECT id FROM dialog_analysis")
        sent_id = fixture_body("status-delivered.json")["entry"][0]["changes"][0]["value"]["statuses"][0]["id"]
        await app.db.execute(  # our reply as the dialog job leaves it once Graph answered with its wamid
            """INSERT INTO messages (instance_name, message_id, dialog_id, role, text, delivery_status, external_id)
               VALUES ($1, 'qb-reply', $2, 'bot', 'Hello!', 'sent', $3)""", f"cloud-{NUMBER_ID}", dialog_id, sent_id)
        status, answer = await post(app.http, app.url, fixture_body("status-delivered.json"))
        assert (status, answer["results"][0]["recorded"]) == (200, True)
        reply = await app.db.fetchrow("SELECT * FROM messages WHERE message_id = 'qb-reply'")
        assert (reply["peer_status"], reply["delivery_status"]) == ("delivered", "sent")
        status, answer = await post(app.http, app.url, fixture_body("status-failed-131047.json"))
        reply = await app.db.fetchrow("SELECT * FROM messages WHERE message_id = 'qb-reply'")
        assert (reply["peer_status"], reply["delivery_status"]) == ("failed", "failed")
        assert reply["delivery_error"].startswith("re-engagement (131047)")
        status, answer = await post(app.http, app.url, fixture_body("status-delivered.json"))  # late, out of order
        assert answer["results"][0]["recorded"] is False
        assert await app.db.fetchval("SELECT peer_status FROM messages WHERE message_id = 'qb-reply'") == "failed"


async def test_automatic_events_are_kept_per_dialog_once_and_never_sent(cloud_app: Any) -> None:
    async with cloud_app() as app:
        event = fixture_body("automatic-event-lead.json")
        wamid = event["entry"][0]["changes"][0]["value"]["automatic_events"][0]["id"]
        await post(app.http, app.url, text_body(PHONE, "hi", wamid, clid=CLID))
        await drain(app.db, app.settings)
        for expected in ("automatic_event", "duplicate"):
            status, answer = await post(app.http, app.url, event)
            assert (status, answer["results"][0]["status"]) == (200, expected)
        row = await app.db.fetchrow("SELECT * FROM whatsapp_cloud_notices")
        assert row["dialog_id"] == await app.db.fetchval("SELECT id FROM dialog_analysis")
        assert (row["kind"], row["event_name"]) == ("automatic_event", "LeadSubmitted")
        assert await app.db.fetchval("SELECT count(*) FROM capi_events_log") == 0
        assert await app.db.fetchval("SELECT count(*) FROM jobs WHERE name LIKE 'capi%'") == 0


async def test_webhook_errors_are_recorded_once(cloud_app: Any) -> None:
    async with cloud_app() as app:
        for expected in ("error", "duplicate"):
            status, answer = await post(app.http, app.url, fixture_body("errors-webhook.json"))
            assert (status, answer["results"][0]["status"]) == (200, expected)
        row = await app.db.fetchrow("SELECT * FROM whatsapp_cloud_notices")
        assert (row["kind"], row["event_name"], row["body"]["title"]) == ("error", "131051", "Message type unknown")


async def test_the_evolution_route_does_not_answer_for_a_cloud_number(cloud_app: Any) -> None:
    async with cloud_app() as app:
        body = {"event": "messages.upsert", "instance": f"cloud-{NUMBER_ID}", "apikey": APP_SECRET, "data": {}}
        async with app.http.post(app.url + "/webhooks/evolution", json=body,
                                 headers={"X-Webhook-Secret": ""}) as resp:
            assert resp.status == 404
        assert (await app.counts())["messages"] == 0


async def test_a_person_without_a_phone_is_keyed_by_the_user_id_meta_sends(cloud_app: Any) -> None:
    """WhatsApp usernames: no phone in `from`; `from_user_id` is our guess at the field (fixtures README)."""
    async with cloud_app() as app:
        body = text_body(PHONE, "hi", "wamid.USER1", clid=CLID)
        message = body["entry"][0]["changes"][0]["value"]["messages"][0]
        del message["from"]
        message["from_user_id"] = "US.13491208655302741918"
        body["entry"][0]["changes"][0]["value"]["contacts"] = [
            {"profile": {"name": "Sheena"}, "user_id": "US.13491208655302741918"}]
        status, answer = await post(app.http, app.url, body)
        assert (status, answer["results"][0]["status"]) == (200, "stored")
        await drain(app.db, app.settings)
        lead = await app.db.fetchrow("SELECT * FROM leads")
        assert (lead["phone"], lead["is_lid"], lead["ctwa_clid"]) == ("US.13491208655302741918", True, CLID)
        message["from_user_id"] = ""  # neither a phone nor a user id: that message is invalid, nothing stored
        message["id"] = "wamid.USER2"
        status, answer = await post(app.http, app.url, body)
        assert (status, answer["results"][0]["status"]) == (200, "invalid")
        assert (await app.counts())["messages"] == 1


async def test_erasing_the_person_deletes_metas_automatic_events_of_their_dialog(cloud_app: Any) -> None:
    async with cloud_app() as app:
        event = fixture_body("automatic-event-lead.json")
        await post(app.http, app.url, text_body(PHONE, "hi", event["entry"][0]["changes"][0]["value"]
                                                ["automatic_events"][0]["id"], clid=CLID))
        await drain(app.db, app.settings)
        await post(app.http, app.url, event)
        found = await privacy.find_person(app.db, [("clinic", PHONE)])
        exported = await privacy.export_person(app.db, [("clinic", PHONE)], found)
        assert [n["event_name"] for n in exported["whatsapp_cloud_notices"]] == ["LeadSubmitted"]
        async with app.db.acquire() as conn, conn.transaction():
            rows = await privacy.erase_person(conn, [("clinic", PHONE)], found)
        assert rows["whatsapp_cloud_notices"] == 1
        assert (await app.counts())["notices"] == 0


async def test_fields_not_read_here_are_answered_200_and_left_alone(cloud_app: Any) -> None:
    """The app may be subscribed to more than `messages` (Meta's template status updates carry no
    phone number metadata): such a change is acknowledged, so Meta does not retry it, and not stored.
    The value below is a guess at that field's shape (no payload was read for it); only `field` matters."""
    async with cloud_app() as app:
        body = {"object": "whatsapp_business_account", "entry": [{"id": "102290129340398", "time": 1739321024,
                "changes": [{"field": "message_template_status_update",
                             "value": {"event": "APPROVED", "message_template_id": 1234, "reason": "NONE"}}]}]}
        status, answer = await post(app.http, app.url, body)
        assert (status, answer["results"]) == (200, [{"status": "ignored", "field": "message_template_status_update"}])
        assert await app.counts() == {"messages": 0, "notices": 0, "statuses": 0}


async def _chat(app: App) -> asyncpg.Record:
    row = await app.db.fetchrow(
        """SELECT d.client_message_count, COALESCE(d.bot_paused_until > now(), false) AS paused
           FROM dialog_analysis d WHERE d.contact_phone = $1""", PHONE)
    assert row is not None
    return row


async def test_a_coexistence_echo_is_the_operators_message_and_pauses_the_bot_once(cloud_app: Any) -> None:
    """smb_message_echoes (Meta's documented payload, fixtures README): what the business wrote from the
    WhatsApp Business app is the operator's, as Evolution's fromMe; a redelivery changes nothing."""
    async with cloud_app() as app:
        await post(app.http, app.url, text_body(PHONE, "Hi, about implants", "wamid.CL1", clid=CLID))
        await drain(app.db, app.settings)
        assert not (await _chat(app))["paused"]
        echo = fixture_body("smb-message-echo.json")  # as documented: `to` is "+16505551234"
        wamid = echo["entry"][0]["changes"][0]["value"]["message_echoes"][0]["id"]
        for expected in ("stored", "duplicate"):
            status, answer = await post(app.http, app.url, echo)
            assert (status, answer["results"]) == (200, [{"id": wamid, "status": expected}])
            await drain(app.db, app.settings)
        rows = await app.db.fetch("SELECT role, contact, text FROM messages ORDER BY id")
        assert [(r["role"], r["contact"]) for r in rows] == [("client", PHONE), ("operator", PHONE)]
        assert rows[1]["text"].startswith("Here's the info you requested!")
        chat = await _chat(app)
        assert chat["paused"] and chat["client_message_count"] == 1  # never counted as the client's
        assert await app.db.fetchval("SELECT count(*) FROM leads") == 1


async def test_bad_echoes_are_refused_or_marked_invalid_and_write_nothing(cloud_app: Any) -> None:
    async with cloud_app() as app:
        body = echo_body(PHONE, "hi", "wamid.BAD1")
        body["entry"][0]["changes"][0]["value"]["message_echoes"] = {"to": PHONE}  # not a list
        status, answer = await post(app.http, app.url, body)
        assert (status, answer["error"]) == (400, "not_a_whatsapp_cloud_webhook")
        assert "message_echoes must be a list" in answer["detail"]
        body = echo_body("call me", "hi", "wamid.BAD2")  # no person to pause the bot for
        status, answer = await post(app.http, app.url, body)
        assert (status, answer["results"][0]["status"]) == (200, "invalid")
        assert "to is not a phone number" in answer["results"][0]["reason"]
        revoked = echo_body(PHONE, "", "wamid.BAD3")  # the business deleted a message: no words
        echo = revoked["entry"][0]["changes"][0]["value"]["message_echoes"][0]
        echo.update({"type": "revoke", "revoke": {"original_message_id": "wamid.X"}})
        del echo["text"]
        status, answer = await post(app.http, app.url, revoked)
        assert (status, answer["results"][0]["status"]) == (200, "ignored")
        assert await app.counts() == {"messages": 0, "notices": 0, "statuses": 0}


async def test_bot_resume_finds_a_cloud_chat_by_phone_number_id_or_instance_name(
    cloud_app: Any, database_url: str
) -> None:
    async with cloud_app() as app:
        await post(app.http, app.url, text_body(PHONE, "Hi", "wamid.RS1", clid=CLID))
        for n, instance in enumerate([NUMBER_ID, f"cloud-{NUMBER_ID}"]):
            status, _ = await post(app.http, app.url, echo_body(PHONE, "Ana here, one moment", f"wamid.OP{n}"))
            assert status == 200
            await drain(app.db, app.settings)
            assert (await _chat(app))["paused"]
            code, out, err = await qualibot(database_url, "bot", "resume", "--instance", instance,
                                            "--phone", "+1 650-555-1234")
            assert (code, err) == (0, ""), err
            assert out.startswith("resumed: the bot answers chat") and "1234" not in out
            assert not (await _chat(app))["paused"]
        code, _, err = await qualibot(database_url, "bot", "resume", "--instance", "999000111", "--phone", PHONE)
        assert code == 2 and "--instance: no WhatsApp instance '999000111'" in err


async def test_a_webhook_failing_midway_is_a_5xx_and_metas_retry_stores_the_rest_exactly_once(cloud_app: Any) -> None:
    """Each change is committed as it is stored, so a later change's failure leaves the earlier ones
    stored: the answer must make Meta retry (any non-200; a 5xx here), and the retry settles what was
    stored as duplicates and stores the rest once. A test-only constraint refuses the last message
    (as a full disk or a bug of ours would)."""
    other = "16505550000"
    body = text_body(PHONE, "Hi", "wamid.PART1")
    body["entry"].extend(fixture_body("errors-webhook.json")["entry"])
    body["entry"].extend(text_body(other, "Hello", "wamid.PART2")["entry"])
    async with cloud_app() as app:
        await app.db.execute("ALTER TABLE messages ADD CONSTRAINT test_refuse_message "
                             "CHECK (message_id <> 'wamid.PART2') NOT VALID")
        try:
            with capture_logs() as logs:
                status, answer = await post(app.http, app.url, body)
            assert status >= 500, answer
            failure = next(e for e in logs if e["event"] == "http.database_error")
            assert failure["sqlstate"] == "23514" and other not in str(logs)  # the row's phone is not logged
            assert "test_refuse_message" not in str(answer)  # no internals in the answer
            assert await app.counts() == {"messages": 1, "notices": 1, "statuses": 0}
        finally:
            await app.db.execute("ALTER TABLE messages DROP CONSTRAINT test_refuse_message")
        status, answer = await post(app.http, app.url, body)  # Meta's retry, the same body
        assert status == 200
        assert [r["status"] for r in answer["results"]] == ["duplicate", "duplicate", "stored"]
        status, answer = await post(app.http, app.url, body)
        assert [r["status"] for r in answer["results"]] == ["duplicate", "duplicate", "duplicate"]
        assert await app.counts() == {"messages": 2, "notices": 1, "statuses": 0}
        await drain(app.db, app.settings)
        rows = await app.db.fetch("SELECT contact_phone AS chat, client_message_count AS n FROM dialog_analysis "
                                  "ORDER BY contact_phone")
        assert [(r["chat"], r["n"]) for r in rows] == [(other, 1), (PHONE, 1)]
