"""Bitrix24 end to end: webhook fixture in → fake portal read → levels recorded → events at Graph."""

from __future__ import annotations

from tests.crm.conftest import Launch, Stack, whatsapp_dialog
from tests.crm.support import b24_path, body

DEAL = "bitrix24:b24-main:deal:759"
INTERESTED = {"field_id": "UF_CRM_1721244482250", "field_type": "enumeration", "enum_value": "Заинтересован",
              "entity_type": "deal"}
ANSWERED = {"field_id": "UF_CRM_1721244499001", "field_type": "enumeration", "enum_id": "61", "entity_type": "deal"}
WON = {"field_id": "STAGE_ID", "enum_id": "C1:WON", "entity_type": "deal"}


async def test_deal_update_reads_deal_labels_and_contact(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", interest=[INTERESTED], qualified=[ANSWERED],
                                scheduled=[WON])
    dialog = await whatsapp_dialog(stack.db, "79161234567")  # contact 84: "8 (916) 123-45-67"
    status, _ = await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    assert status == 200

    rows = await stack.log_rows(DEAL, count=2, status="success")
    assert [(r["event_level"], r["event_name"], r["source"], r["dialog_analysis_id"]) for r in rows] == [
        (1, "LeadSubmitted", "crm", dialog), (2, "QualifiedLead", "crm", dialog)]
    events = await stack.sent_events(2)
    assert {e["user_data"]["ctwa_clid"] for e in events} == {"ARAkLk-click-1"}
    assert stack.b24.calls == ["crm.deal.get", "crm.deal.userfield.list", "crm.contact.get"]
    assert [r["params"] for r in stack.b24.requests if r["method"] != "crm.deal.userfield.list"] == [
        {"id": "759"}, {"id": "84"}]


async def test_deal_won_later_sends_schedule_once(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", qualified=[ANSWERED], scheduled=[WON])
    await whatsapp_dialog(stack.db, "79161234567")
    await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    await stack.log_rows(DEAL, count=2, status="success")
    stack.b24.deals["759"]["STAGE_ID"] = "C1:WON"
    await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    rows = await stack.log_rows(DEAL, count=3, status="success")
    assert [r["event_name"] for r in rows] == ["LeadSubmitted", "QualifiedLead", "InitiateCheckout"]
    await stack.jobs_done()
    assert sorted(e["event_name"] for e in stack.graph.events_sent()) == [
        "InitiateCheckout", "LeadSubmitted", "QualifiedLead"]


async def test_lead_update_with_status_and_boolean(launch: Launch) -> None:
    in_process = {"field_id": "STATUS_ID", "enum_id": "IN_PROCESS", "entity_type": "lead"}
    booked = {"field_id": "UF_CRM_1721300000001", "field_type": "boolean", "entity_type": "lead"}
    stack: Stack = await launch(connection="b24-main", interest=[in_process], qualified=[ANSWERED],
                                scheduled=[booked])
    dialog = await whatsapp_dialog(stack.db, "79161234567")  # lead 311's own PHONE "+7 916 123-45-67"
    status, _ = await stack.post(b24_path(), body("bitrix24/webhook-lead-update.txt"))
    assert status == 200

    rows = await stack.log_rows("bitrix24:b24-main:lead:311", count=3, status="success")
    assert [(r["event_level"], r["dialog_analysis_id"]) for r in rows] == [(1, dialog), (2, dialog), (3, dialog)]
    assert stack.b24.calls == ["crm.lead.get"]  # it has its own phone; no labels needed


async def test_deal_fields_do_not_match_a_lead(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", qualified=[ANSWERED])
    stack.b24.leads["311"]["UF_CRM_1721244499001"] = ["61"]  # same field name on a lead: restricted to deals
    await whatsapp_dialog(stack.db, "79161234567")
    await stack.post(b24_path(), body("bitrix24/webhook-lead-update.txt"))
    await stack.jobs_done()
    assert stack.b24.calls == ["crm.lead.get"]
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 0


async def test_unknown_deal_records_nothing(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", qualified=[ANSWERED])
    data = body("bitrix24/webhook-deal-update.txt").replace(b"data[FIELDS][ID]=759", b"data[FIELDS][ID]=9999")
    status, _ = await stack.post(b24_path(), data)
    assert status == 200
    await stack.jobs_done()
    assert stack.b24.calls == ["crm.deal.get"]
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 0
