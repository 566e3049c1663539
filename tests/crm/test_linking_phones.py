"""CRM → WhatsApp linking matches phones the way WhatsApp identifies people (issue 12.6).

Brazil 55+DDD+9+8 digits ≡ 55+DDD+8 digits, Mexico 521… ≡ 52…, Argentina 549… ≡ 54…, as Evolution
API checks both forms (evolution-api 2.3.7 src/utils/onWhatsappCache.ts getAvailableNumbers and
whatsapp.baileys.service.ts whatsappNumber; createJid.ts formatBRNumber / formatMXOrARNumber).
End to end: the chat arrives through the real Evolution webhook route and the drain, the amoCRM
webhook through its route, the sync reads the fake amoCRM, and the events reach the fake Meta.
"""

from __future__ import annotations

import asyncpg
import pytest

from tests.bot.evolution_keys import click_id, upsert
from tests.crm.conftest import Launch
from tests.crm.support import amo_path, body
from tests.helpers import wait_for
from tests.seed import WEBHOOK_SECRET

WON_STAGE = {"field_id": "pipeline_status", "enum_id": "9217056:142"}


@pytest.mark.parametrize(("crm_phone", "chat"), [
    ("+55 31 98888-7777", "553188887777"),     # the case: the CRM has the ninth digit, the JID not
    ("+55 (31) 8888-7777", "5531988887777"),   # and the other way round
    ("+54 11 3137-6731", "5491131376731"),     # Argentina: the JID of the real 2.3.7 capture has the 9
    ("+52 55 1234 5678", "5215512345678"),     # Mexico: the JID has the 1
])
async def test_a_crm_phone_finds_the_chat_whatsapp_knows_under_the_other_form(
    launch: Launch, crm_phone: str, chat: str
) -> None:
    stack = await launch(scheduled=[WON_STAGE])
    stack.amo.add_lead(10701093, pipeline_id=9217056, status_id=142, contact_id=148776)
    stack.amo.add_contact(148776, crm_phone)
    async with stack.session.post(f"{stack.url}/webhooks/evolution", headers={"X-Webhook-Secret": WEBHOOK_SECRET},
                                  json=upsert("2.3.7", "3EB0CRMLINK1", "Olá", phone=chat, ad=True)) as resp:
        assert resp.status == 200
    dialog = await wait_for(lambda: stack.db.fetchval("SELECT id FROM dialog_analysis WHERE contact_phone = $1",
                                                      chat), what="the chat's dialog")
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-status-lead.txt"))
    assert status == 200
    rows = await stack.log_rows("amocrm:amo-main:lead:10701093", count=3, status="success")
    assert {r["dialog_analysis_id"] for r in rows} == {dialog}
    events = await stack.sent_events(3)
    assert {e["user_data"]["ctwa_clid"] for e in events} == {click_id()}


async def test_the_key_joins_only_the_forms_whatsapp_joins(db: asyncpg.Pool) -> None:
    async def key(phone: str) -> str:
        value: str = await db.fetchval("SELECT whatsapp_phone_key($1)", phone)
        return value

    assert await key("5531988887777") == await key("553188887777") == "553188887777"
    assert await key("5491131376731") == await key("541131376731") == "541131376731"
    assert await key("5215512345678") == await key("525512345678") == "525512345678"
    # other countries, and numbers of other lengths or prefixes, are their own key
    for phone in ("79161234567", "5531888877770", "553188887777", "5255123456789", "16505551212"):
        assert await key(phone) == phone
