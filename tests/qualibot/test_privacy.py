"""`qualibot privacy export | erase`: one person's data, found in every table, shown, then erased.

The data gets there the real way: Evolution webhooks through the app and its workers (reply,
analysis, Meta at the fake Graph), and an amoCRM contact webhook carrying the person's phone.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import asyncpg
import pytest

from core.settings import Settings
from tests.bot.evolution_keys import LID, upsert
from tests.fakes.llm_obedient import obedient
from tests.helpers import wait_for
from tests.ops.conftest import Qualibot, qualibot  # noqa: F401  # the fixture
from tests.seed import AMO_SECRET, seed
from tests.whatsapp_stack import whatsapp_stack

PERSON = "5531988887777"  # typed as "+55 31 98888-7777", or "(31) 98888-7777" in a BR account
OTHER = "5531977776666"
PERSON_TEXTS = ["Oi, vi o anúncio dos implantes", "Posso agendar terça às 10h? Meu email é ana@example.com"]
OTHER_TEXTS = ["Olá, quanto custa?", "Quero agendar quinta"]
AMO_CONTACT = Path(__file__).parents[1] / "crm" / "fixtures" / "amocrm" / "webhook-update-contact.txt"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


@pytest.fixture
async def two_people(db: asyncpg.Pool, make_settings: Callable[..., Settings]) -> AsyncIterator[asyncpg.Pool]:
    """Two clients of a BR clinic, each with a dialog from an ad, levels sent to Meta; an amoCRM
    contact webhook with the person's phone."""
    async with whatsapp_stack(db, make_settings, obedient("newest"), region="BR") as stack:
        for phone, texts in ((PERSON, PERSON_TEXTS), (OTHER, OTHER_TEXTS)):
            for n, text in enumerate(texts):
                await stack.send(phone, text, f"{phone}-{n}", clid=None if n else f"clid-{phone}",
                                 push_name=f"Name of {phone[-4:]}")
        form = AMO_CONTACT.read_text().replace("%2B7%20%28916%29%20123-45-67", "%2B55%20%2831%29%2098888-7777")
        async with stack.http.post(f"{stack.url}/webhooks/amocrm/amo-main/{AMO_SECRET}", data=form.encode(),
                                   headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
            assert resp.status == 200

        async def all_sent() -> bool:
            return bool(await db.fetchval(
                "SELECT count(*) = 6 FROM capi_events_log WHERE status = 'success'"))

        await wait_for(all_sent, timeout=20, what="three levels of each dialog at Meta")
    await db.execute("UPDATE leads SET email = 'ana@example.com' WHERE phone = $1", PERSON)
    yield db


async def everything(db: asyncpg.Pool) -> str:
    """Every row of every table, as text: where a phone, a name or a hash could hide."""
    tables = [r["tablename"] for r in await db.fetch("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")]
    parts = [str(await db.fetchval(f'SELECT coalesce(jsonb_agg(to_jsonb(t)), \'[]\')::text FROM "{name}" t'))
             for name in tables]
    return "\n".join(parts)


async def test_export_shows_what_is_stored_about_the_person_only(two_people: asyncpg.Pool, qualibot: Qualibot) -> None:  # noqa: F811
    run = await qualibot("privacy", "export", "--phone", "+55 31 98888-7777")
    assert run.code == 0, run.err
    stored = json.loads(run.out)
    assert stored["phone"] == [PERSON]
    assert [(lead["phone"], lead["email"], lead["ctwa_clid"]) for lead in stored["leads"]] == [
        (PERSON, "ana@example.com", f"clid-{PERSON}")]
    client = [m["text"] for m in stored["messages"] if m["role"] == "client"]
    assert client == PERSON_TEXTS
    assert {m["role"] for m in stored["messages"]} == {"client", "bot"}
    names = sorted(r["event_name"] for r in stored["capi_events_log"])
    assert names == ["InitiateCheckout", "LeadSubmitted", "QualifiedLead"]
    assert len(stored["webhook_events"]) == 1
    assert OTHER not in run.out and OTHER_TEXTS[0] not in run.out
    local = await qualibot("privacy", "export", "--phone", "(31) 98888-7777", "--account", "clinic")
    assert json.loads(local.out) == stored


async def test_erase_leaves_nothing_of_the_person_and_records_it(two_people: asyncpg.Pool, qualibot: Qualibot) -> None:  # noqa: F811
    db = two_people
    before = await db.fetch("SELECT id, event_level, status, event_id FROM capi_events_log ORDER BY id")
    messages = await db.fetchval("""SELECT count(*) FROM messages m JOIN dialog_analysis d ON d.id = m.dialog_id
                                    WHERE d.contact_phone = $1""", PERSON)  # 2 client, 1-2 bot replies
    run = await qualibot("privacy", "erase", "--phone", "(31) 98888-7777", "--by", "dpo@clinic")
    assert run.code == 0, run.err
    assert run.out.startswith("erasure 1 by dpo@clinic: ")
    assert (f"messages: {messages}, leads: 1, dialog_analysis: 1, whatsapp_lids: 0, whatsapp_cloud_notices: 0, "
            "capi_events_log: 3, "
            "webhook_events: 1") in run.out

    dump = await everything(db)
    for trace in (PERSON, "988887777", sha(PERSON), sha("ana@example.com"), "ana@example.com",
                  f"clid-{PERSON}", PERSON_TEXTS[0], "Name of 7777", "Ирина"):
        assert trace not in dump, trace
    # the other client is untouched, and the audit rows stay: same ids, levels, statuses, event ids
    for trace in (OTHER, sha(OTHER), OTHER_TEXTS[1], f"clid-{OTHER}", "Name of 6666"):
        assert trace in dump, trace
    after = await db.fetch("SELECT id, event_level, status, event_id FROM capi_events_log ORDER BY id")
    assert after == before
    dialog = await db.fetchrow("SELECT * FROM dialog_analysis WHERE contact_phone LIKE 'erased-%'")
    assert dialog["is_scheduled"] and dialog["capi_scheduled_sent"] and dialog["analysis_reasoning"] is None
    record = await db.fetchrow("SELECT * FROM privacy_erasures")
    assert (record["requested_by"], record["phone_masked"], record["account_id"]) == (
        "dpo@clinic", "5531*******77", None)
    assert record["rows"] == {"messages": messages, "leads": 1, "dialog_analysis": 1, "whatsapp_lids": 0,
                              "whatsapp_cloud_notices": 0, "capi_events_log": 3, "webhook_events": 1}

    again = await qualibot("privacy", "export", "--phone", "+55 31 98888-7777")
    stored = json.loads(again.out)
    assert all(stored[k] == [] for k in ("leads", "dialogs", "messages", "capi_events_log", "webhook_events"))
    twice = await qualibot("privacy", "erase", "--phone", "+55 31 98888-7777")
    assert twice.code == 0 and "nothing was stored" in twice.out


async def test_a_pending_event_of_an_erased_person_is_never_sent(two_people: asyncpg.Pool, qualibot: Qualibot) -> None:  # noqa: F811
    db = two_people
    await db.execute("""UPDATE capi_events_log SET status = 'pending' WHERE event_level = 3 AND dialog_analysis_id =
                        (SELECT id FROM dialog_analysis WHERE contact_phone = $1)""", PERSON)
    assert (await qualibot("privacy", "erase", "--phone", "+5531988887777")).code == 0
    row = await db.fetchrow("SELECT status, error, request FROM capi_events_log WHERE event_level = 3 "
                            "AND contact_phone IS NULL")
    assert row["status"] == "skipped" and "erased at the person's request" in row["error"]
    assert set(row["request"]["data"][0]["user_data"]) == {"whatsapp_business_account_id"}


@pytest.mark.parametrize(("args", "message"), [
    (["--phone", "not a phone"], "--phone: 'not a phone' is not a phone number"),
    (["--phone", "+55 31 98888-7777", "--account", "nope"], "--account: no account 'nope'"),
])
async def test_bad_arguments_exit_2_naming_the_field_and_change_nothing(
    db: asyncpg.Pool, qualibot: Qualibot, args: list[str], message: str  # noqa: F811
) -> None:
    await seed(db)
    for action in ("erase", "export"):
        run = await qualibot("privacy", action, *args)
        assert (run.code, run.out) == (2, "")
        assert message in run.err
    assert await db.fetchval("SELECT count(*) FROM privacy_erasures") == 0


async def test_erase_finds_the_person_under_their_lid_and_either_brazilian_form(
    db: asyncpg.Pool, make_settings: Callable[..., Settings], qualibot: Qualibot,  # noqa: F811
) -> None:
    """A chat first seen as `<lid>@lid`, then keyed by Evolution 2.4.0-rc2 with the phone in its old
    8-digit form (553188887777, no ninth digit) beside the LID: typed as +55 31 98888-7777, the
    person is still found, and the LID mapping goes with the rest."""
    short = "553188887777"
    async with whatsapp_stack(db, make_settings, obedient("newest"), region="BR") as stack:
        for shape, n in (("lid-only", 0), ("2.4.0-rc2", 1)):
            body = upsert(shape, f"LIDMSG{n}", f"mensagem {n}", phone=short, ad=n == 0)
            async with stack.http.post(f"{stack.url}/webhooks/evolution", json=body) as resp:
                assert resp.status == 200, await resp.text()

        async def merged() -> bool:
            return bool(await db.fetchval(
                """SELECT count(*) = 1 FROM leads WHERE phone = $1
                   AND EXISTS (SELECT 1 FROM whatsapp_lids WHERE lid = $2)""", short, LID))

        await wait_for(merged, timeout=20, what="the LID chat merged into the phone's")
    run = await qualibot("privacy", "erase", "--phone", "+55 31 98888-7777")
    assert run.code == 0, run.err
    assert "leads: 1, dialog_analysis: 1, whatsapp_lids: 1" in run.out
    dump = await everything(db)
    for trace in (short, LID, "mensagem 0", "mensagem 1"):
        assert trace not in dump, trace
