"""amoCRM end to end: webhook fixture in → fake amoCRM read → levels recorded → events at Graph."""

from __future__ import annotations

import copy
import hashlib
from typing import Any

from tests.crm.conftest import Launch, Stack, whatsapp_dialog
from tests.crm.support import amo_path, body
from tests.fakes.amocrm import custom_field

INTERESTED = {"field_id": "93713", "field_name": "Статус лида", "field_type": "select", "enum_id": "45997",
              "enum_value": "Заинтересован"}
BOOKED = {"field_id": "93721", "field_name": "Записан на консультацию", "field_type": "checkbox"}
WON_STAGE = {"field_id": "pipeline_status", "enum_id": "9217056:142"}
LEAD = "amocrm:amo-main:lead:1190401"


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


async def test_add_lead_reaches_interest_and_qualified(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED], qualified=[BOOKED], scheduled=[WON_STAGE])
    dialog = await whatsapp_dialog(stack.db, "79161234567")
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    assert status == 200

    rows = await stack.log_rows(LEAD, count=2, status="success")
    assert [(r["event_level"], r["event_name"], r["source"], r["dialog_analysis_id"]) for r in rows] == [
        (1, "LeadSubmitted", "crm", dialog), (2, "QualifiedLead", "crm", dialog)]
    events = await stack.sent_events(2)
    assert sorted(e["event_name"] for e in events) == ["LeadSubmitted", "QualifiedLead"]
    assert all(e["user_data"]["ctwa_clid"] == "ARAkLk-click-1" for e in events)
    assert all(e["user_data"]["ph"] in ([sha("79161234567")], sha("79161234567")) for e in events)
    flags = await stack.db.fetchrow("SELECT is_interested, is_qualified, is_scheduled FROM dialog_analysis")
    assert tuple(flags) == (True, True, False)
    paths = [(r["path"], r["query"]) for r in stack.amo.requests]
    assert paths == [("/api/v4/leads/1190401", {"with": "contacts"}), ("/api/v4/contacts/148775", {})]
    assert all(r["authorization"] == "Bearer amo-long-lived-token" for r in stack.amo.requests)


async def test_status_lead_in_won_stage_records_every_level(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED], scheduled=[WON_STAGE])
    stack.amo.add_lead(10701093, pipeline_id=9217056, status_id=142, contact_id=148776)
    stack.amo.add_contact(148776, "8 (916) 765-43-21")  # a local number, read with the account's region
    dialog = await whatsapp_dialog(stack.db, "79167654321")
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-status-lead.txt"))
    assert status == 200

    rows = await stack.log_rows("amocrm:amo-main:lead:10701093", count=3, status="success")
    assert [(r["event_level"], r["event_name"], r["dialog_analysis_id"]) for r in rows] == [
        (1, "LeadSubmitted", dialog), (2, "QualifiedLead", dialog), (3, "InitiateCheckout", dialog)]
    assert sorted(e["event_name"] for e in await stack.sent_events(3)) == [
        "InitiateCheckout", "LeadSubmitted", "QualifiedLead"]


async def test_two_leads_one_linked_one_without_whatsapp_lead(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    stack.amo.add_lead(1190402, fields=[custom_field(93713, "select", {"value": "Заинтересован", "enum_id": 45997,
                                                                          "enum_code": None})], contact_id=148790)
    stack.amo.add_contact(148790, "+7 999 000-11-22")
    dialog = await whatsapp_dialog(stack.db, "79161234567")
    status, answer = await stack.post(amo_path(), body("amocrm/webhook-update-two-leads.txt"))
    assert status == 200 and answer["syncs"] == 2

    linked = await stack.log_rows(LEAD, count=1, status="success")
    assert [(r["event_level"], r["dialog_analysis_id"]) for r in linked] == [(1, dialog)]
    skipped = await stack.log_rows("amocrm:amo-main:lead:1190402", count=1)
    assert [(r["event_level"], r["status"], r["dialog_analysis_id"]) for r in skipped] == [(1, "skipped", None)]
    assert "amocrm:amo-main:lead:1190402" in skipped[0]["error"]
    assert "no WhatsApp lead with phone 79990001122" in skipped[0]["error"]
    await stack.sent_events(1)
    await stack.jobs_done()
    assert len(stack.graph.events_sent()) == 1  # the unlinked lead sent nothing


async def test_contact_update_matches_contact_fields(launch: Launch) -> None:
    patient = {"field_id": "512345", "field_name": "Тип клиента", "field_type": "select", "enum_id": "7001"}
    stack: Stack = await launch(interest=[patient])
    stack.amo.add_contact(148775, "+7 (916) 123-45-67", fields=[
        custom_field(512345, "select", {"value": "Пациент", "enum_id": 7001, "enum_code": None})])
    dialog = await whatsapp_dialog(stack.db, "79161234567")
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-update-contact.txt"))
    assert status == 200

    rows = await stack.log_rows("amocrm:amo-main:contact:148775", count=1, status="success")
    assert [(r["event_level"], r["event_name"], r["dialog_analysis_id"]) for r in rows] == [
        (1, "LeadSubmitted", dialog)]
    assert [r["path"] for r in stack.amo.requests] == ["/api/v4/contacts/148775"]


async def test_company_under_contacts_is_read_as_a_company(launch: Launch) -> None:
    stack: Stack = await launch(interest=[{"field_id": "600", "value": "VIP"}])
    stack.amo.add_contact(555, "+7 916 123-45-67", fields=[custom_field(600, "text", {"value": "VIP"})],
                          kind="companies")
    await whatsapp_dialog(stack.db, "79161234567")
    form = "contacts[update][0][id]=555&contacts[update][0][type]=company&account[id]=17769199"
    status, _ = await stack.post(amo_path(), form)
    assert status == 200
    await stack.log_rows("amocrm:amo-main:company:555", count=1, status="success")
    assert [r["path"] for r in stack.amo.requests] == ["/api/v4/companies/555"]


async def test_a_lead_without_click_id_is_a_skipped_row(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    dialog = await whatsapp_dialog(stack.db, "79161234567", clid=None)
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    rows = await stack.log_rows(LEAD, count=1, status="skipped")
    assert rows[0]["dialog_analysis_id"] == dialog and "click id" in rows[0]["error"]
    await stack.jobs_done()
    assert stack.graph.requests == []


async def test_no_level_reached_and_deleted_entities_record_nothing(launch: Launch) -> None:
    stack: Stack = await launch(interest=[{"field_id": "93713", "enum_id": "1"}])
    await whatsapp_dialog(stack.db, "79161234567")
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))  # read, but no field matches
    await stack.post(amo_path(), "leads[update][0][id]=424242&account[id]=17769199")  # 204: gone
    await stack.jobs_done()
    assert sorted(r["path"] for r in stack.amo.requests) == [
        "/api/v4/contacts/148775", "/api/v4/leads/1190401", "/api/v4/leads/424242"]
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 0
    assert await stack.db.fetchval("SELECT count(*) FROM jobs WHERE status = 'failed'") == 0


async def test_a_second_webhook_does_not_send_twice(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    await whatsapp_dialog(stack.db, "79161234567")
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    await stack.log_rows(LEAD, count=1, status="success")
    await stack.post(amo_path(), body("amocrm/webhook-update-two-leads.txt"))
    await stack.jobs_done()
    assert len(stack.amo.requests) >= 4  # read again ...
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 1  # ... and nothing new
    assert len(stack.graph.events_sent()) == 1


async def test_a_dialog_of_another_crm_direction_is_left_to_it(launch: Launch) -> None:
    def two_directions(cfg: dict[str, Any]) -> None:
        implants = cfg["accounts"][0]["directions"][0]
        whitening = copy.deepcopy(implants) | {"id": "whitening", "name": "Whitening", "ad_ids": [], "pixel_id": "555"}
        cfg["accounts"][0]["directions"].append(whitening)

    stack = await launch(interest=[INTERESTED], configure=two_directions)
    dialog = await whatsapp_dialog(stack.db, "79161234567", direction="implants")
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    rows = await stack.log_rows(LEAD, count=1, status="success")
    await stack.jobs_done()
    assert [(r["direction_id"], r["dialog_analysis_id"]) for r in rows] == [("implants", dialog)]
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 1  # nothing for whitening
