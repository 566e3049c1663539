"""`qualibot doctor`: one finding per line with its severity and direction; exit 1 on any ERROR."""

from __future__ import annotations

from typing import Any

import asyncpg
import pytest

from tests.ops.conftest import Qualibot
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, seed, tenant_config

ACCEPTED = ("Purchase, LeadSubmitted, InitiateCheckout, AddToCart, ViewContent, OrderCreated, OrderShipped, "
            "OrderDelivered, OrderCanceled, OrderReturned, CartAbandoned, QualifiedLead, RatingProvided, "
            "ReviewProvided")
LLM_KEY = "sk-test-0123456789abcdef"


def clean_config(**capi: Any) -> dict[str, Any]:
    """The seed's tenant with names Meta accepts: doctor finds nothing wrong with it (given an LLM key)."""
    cfg = tenant_config()
    direction(cfg)["capi"].update({
        "event_names": {1: "LeadSubmitted", 2: "QualifiedLead", 3: "Purchase"},
        "event_values": {3: {"value": 100, "currency": "USD"}},
        **capi,
    })
    return cfg


def direction(cfg: dict[str, Any], index: int = 0) -> dict[str, Any]:
    found: dict[str, Any] = cfg["accounts"][0]["directions"][index]
    return found


def lines(out: str, severity: str) -> list[str]:
    return [line for line in out.splitlines() if line.startswith(severity)]


@pytest.fixture
def with_llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)


async def test_an_empty_database_is_an_error(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    run = await qualibot("doctor")
    assert run.code == 1
    assert lines(run.out, "ERROR") == [
        "ERROR  -  no directions configured: this deployment sends nothing to Meta; describe them in a config "
        "file and run `qualibot config apply FILE.yaml`"
    ]


async def test_a_clean_direction_exits_0_saying_what_it_checked(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    await seed(db, clean_config())
    run = await qualibot("doctor")
    assert run.code == 0, run.out
    assert lines(run.out, "ERROR") == lines(run.out, "WARN") == []
    assert "OK     implants  Meta token: the ad account act_1001's token, EAAH…oken" in run.out
    assert f"OK     implants  dataset (pixel_id) {PIXEL_ID}" in run.out
    assert "OK     implants  event names: 1: LeadSubmitted, 2: QualifiedLead, 3: Purchase" in run.out
    assert "LLM key sk-t…cdef" in run.out
    assert run.out.endswith("doctor: 0 error(s), 0 warning(s) in 1 direction(s)\n")
    assert META_TOKEN not in run.out and LLM_KEY not in run.out


async def test_the_default_names_are_an_error_listing_the_accepted_ones_and_no_llm_key_is_one_too(
    db: asyncpg.Pool, qualibot: Qualibot
) -> None:
    cfg = tenant_config()
    del direction(cfg)["capi"]["event_names"]  # the defaults: Lead, CompleteRegistration, Schedule
    await seed(db, cfg)
    run = await qualibot("doctor")
    assert run.code == 1
    names, llm = lines(run.out, "ERROR")
    assert names.startswith("ERROR  implants  event names outside Meta's list for business messaging, which "
                            "Meta refuses with subcode 2804066: level 1 Lead, level 2 CompleteRegistration, "
                            "level 3 Schedule")
    assert f"Meta documents only: {ACCEPTED}." in names and "capi.event_names" in names
    assert "capi.allow_unlisted_event_names: true" in names
    assert llm.startswith("ERROR  implants  no LLM key (OPENAI_API_KEY")


async def test_allow_unlisted_event_names_turns_the_error_into_a_warning(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    await seed(db, clean_config(event_names={1: "Lead", 2: "QualifiedLead", 3: "Purchase"},
                                allow_unlisted_event_names=True))
    run = await qualibot("doctor")
    assert run.code == 0, run.out
    [warning] = lines(run.out, "WARN")
    assert warning.startswith("WARN   implants  event names outside Meta's list for business messaging: "
                              "level 1 Lead; sent anyway because capi.allow_unlisted_event_names is true")


async def test_the_accounts_fallback_token_is_named_and_no_token_at_all_is_an_error(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    cfg = clean_config()
    cfg["accounts"][0]["ad_accounts"][0]["access_token"] = None
    await seed(db, cfg)
    run = await qualibot("doctor")
    assert run.code == 0
    assert ("Meta token: the account clinic's fallback token (ad account act_1001 has none), EAAG…oken"
            in run.out)
    assert USER_TOKEN not in run.out

    await db.execute("UPDATE user_accounts SET access_token = NULL")
    run = await qualibot("doctor")
    assert run.code == 1
    assert lines(run.out, "ERROR") == [
        "ERROR  implants  no Meta token: set access_token on ad account act_1001 or account clinic"
    ]


async def test_no_dataset_and_no_waba_id_are_errors(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    cfg = clean_config()
    direction(cfg).update(pixel_id=None, whatsapp_business_account_id=None)
    await seed(db, cfg)
    run = await qualibot("doctor")
    assert run.code == 1
    errors = lines(run.out, "ERROR")
    assert any("no dataset (pixel_id)" in e for e in errors)
    assert any("no whatsapp_business_account_id" in e for e in errors)


async def test_a_test_event_code_and_a_shared_dataset_warn_but_exit_0(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    cfg = clean_config(test_event_code="TEST12345")
    veneers = {**direction(cfg), "id": "veneers", "name": "Veneers", "ad_ids": []}
    veneers["capi"] = {**direction(cfg)["capi"], "test_event_code": None}
    cfg["accounts"][0]["directions"].append(veneers)
    await seed(db, cfg)
    run = await qualibot("doctor")
    assert run.code == 0, run.out
    warnings = lines(run.out, "WARN")
    assert any(w.startswith("WARN   implants  test_event_code 'TEST12345' is on") for w in warnings)
    assert f"WARN   implants  dataset {PIXEL_ID} is shared with direction(s) veneers: their audiences " \
        "and optimisation events aggregate" in warnings
    assert f"WARN   veneers   dataset {PIXEL_ID} is shared with direction(s) implants: their audiences " \
        "and optimisation events aggregate" in warnings
    assert run.out.endswith("doctor: 0 error(s), 3 warning(s) in 2 direction(s)\n")


async def test_repeated_names_and_purchase_without_a_value_warn(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    await seed(db, clean_config(event_names={1: "QualifiedLead", 2: "QualifiedLead", 3: "Purchase"},
                                event_values={}))
    run = await qualibot("doctor")
    assert run.code == 0
    warnings = " / ".join(lines(run.out, "WARN"))
    assert "levels 1 and 2 both send QualifiedLead" in warnings
    assert "level 3 sends Purchase without a value" in warnings and "capi.event_values.3" in warnings


async def test_whatsapp_source_needs_a_qualification_prompt(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    cfg = clean_config()
    direction(cfg)["qualification_prompt"] = None
    await seed(db, cfg)
    run = await qualibot("doctor")
    assert run.code == 1
    assert lines(run.out, "ERROR") == [
        "ERROR  implants  no qualification_prompt: the LLM has no questions to judge levels 2 and 3 against"
    ]


async def test_crm_source_needs_field_ids_not_an_llm(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    fields = [{"field_id": "93713", "enum_id": "45997"}]
    await seed(db, clean_config(source="crm", crm_connection="amo-main", interest_fields=fields,
                                scheduled_fields=fields))
    run = await qualibot("doctor")  # no OPENAI_API_KEY: not needed for a CRM direction
    assert run.code == 0, run.out
    assert "OK     implants  CRM connection amo-main (amocrm)" in run.out
    assert lines(run.out, "WARN") == [
        "WARN   implants  no field ids for level 2 (capi.qualified_fields): it is reported only when a higher "
        "level is reached"
    ]
    await db.execute("UPDATE account_directions SET capi_interest_fields = '[]', capi_scheduled_fields = '[]'")
    run = await qualibot("doctor")
    assert run.code == 1
    assert any("no CRM fields configured" in e for e in lines(run.out, "ERROR"))


async def test_dialogs_not_analysed_are_reported(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    await seed(db, clean_config())
    await db.execute(
        """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, direction_id, analysis_status,
                                        analysis_detail)
           SELECT 'clinic', 'clinic-main', '7916000000' || g, 'implants', 'not_analysed', 'LLM timed out'
           FROM generate_series(1, 3) g"""
    )
    run = await qualibot("doctor")
    assert run.code == 0
    assert lines(run.out, "WARN") == [
        "WARN   implants  3 dialog(s) not analysed (analysis_status = 'not_analysed'); latest reason: "
        "LLM timed out"
    ]


async def test_capi_off_is_a_warning(db: asyncpg.Pool, qualibot: Qualibot) -> None:
    await seed(db, clean_config(enabled=False))
    run = await qualibot("doctor")
    assert run.code == 0
    assert run.out.splitlines()[0] == (
        "WARN   implants  CAPI is off (capi.enabled: false): no events are sent for this direction"
    )


async def test_database_unavailable_exits_1(qualibot: Qualibot, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql://postgres@127.0.0.1:9/nothing")
    run = await qualibot("doctor")
    assert run.code == 1 and "database unavailable" in run.err


async def test_an_unmigrated_database_says_to_migrate(
    qualibot: Qualibot, monkeypatch: pytest.MonkeyPatch, database_url: str
) -> None:
    # a search_path with no qualibot tables on it looks exactly like a database never migrated
    joiner = "&" if "?" in database_url else "?"
    monkeypatch.setenv("DATABASE_URL", f"{database_url}{joiner}search_path=nothing_here")
    for command in (("doctor",), ("report", "funnel")):
        run = await qualibot(*command)
        assert run.code == 1 and "run `qualibot migrate` first" in run.err, run.err


async def test_messages_no_worker_links_are_an_error_and_orphans_a_warning(
    db: asyncpg.Pool, qualibot: Qualibot, with_llm_key: None
) -> None:
    await seed(db, clean_config())
    await db.execute(
        """INSERT INTO messages (instance_name, message_id, role, text, contact, created_at, intake_error)
           VALUES ('clinic-main', 'RECENT', 'client', 'oi', '79160000001', now(), NULL),
                  ('clinic-main', 'STUCK', 'client', 'oi', '79160000002', now() - interval '5 minutes', NULL),
                  ('clinic-main', 'BAD', 'client', 'oi', '79160000004', now(), 'DataError: value too long'),
                  ('removed-instance', 'ORPHAN', 'client', 'oi', '79160000003', now() - interval '1 day', NULL)""")
    run = await qualibot("doctor")
    assert run.code == 1
    stalled, set_aside = lines(run.out, "ERROR")
    assert stalled.startswith("ERROR  -         2 WhatsApp message(s) waiting for the intake drain, the oldest for 30")
    assert "is a process with workers running" in stalled
    assert "1 WhatsApp message(s) could not be linked to a dialog and were set aside; latest: DataError: value " \
           "too long" in set_aside
    [warning] = lines(run.out, "WARN")
    assert "1 stored WhatsApp message(s) belong to instances no longer configured" in warning

    await db.execute("DELETE FROM messages WHERE message_id IN ('STUCK', 'ORPHAN', 'BAD')")
    run = await qualibot("doctor")
    assert run.code == 0, run.out
    assert "intake: 1 message(s) being linked" in run.out
