"""A CRM contact's email reaches the WhatsApp lead and goes to Meta hashed as `em` (issue 13.3).

Shapes: amoCRM v4 contacts carry the system field `field_code: "EMAIL"`, a multitext whose values
are `{value, enum_id, enum_code: "WORK"|"PRIV"...}` (amocrm-api-php 1.9.0
examples/contacts_actions.php, MultitextCustomFieldValueModel); Bitrix24's crm.contact.get has
`EMAIL: [{ID, VALUE_TYPE, VALUE, TYPE_ID}]` (b24phpsdk 1.9.0
src/Services/CRM/Common/Result/SystemFields/Types/Email.php; the fixture rest-crm.contact.get.json).
Meta: trim, lower-case, SHA-256; `John_Smith@gmail.com` hashes to the digest below (meta-capi.md §3,
and facebook-python-business-sdk serverside/normalize.py: `data.lower().strip()` for `em`).
"""

from __future__ import annotations

import hashlib

from tests.crm.conftest import Launch, Stack, whatsapp_dialog
from tests.crm.support import amo_path, b24_path, body
from tests.fakes.amocrm import custom_field

META_EXAMPLE_DIGEST = "62a14e44f765419d10fea99367361a727c12365e2520f32218d505ed9aa0f62f"
INTERESTED = {"field_id": "93713", "field_type": "select", "enum_id": "45997"}


def email_field(*values: str) -> dict[str, object]:
    return custom_field(45965, "multitext", *({"value": v, "enum_id": 45967, "enum_code": "WORK"} for v in values),
                        name="Email", code="EMAIL")


async def test_amocrm_contact_email_goes_out_as_em(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    # lead 1190401 (fixture) has the INTERESTED select; its main contact 148775 gets an email
    emails = email_field("not an address", " John_Smith@Gmail.com ")
    stack.amo.add_contact(148775, "+7 (916) 123-45-67", fields=[emails])
    dialog = await whatsapp_dialog(stack.db, "79161234567")
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    assert status == 200

    await stack.log_rows("amocrm:amo-main:lead:1190401", count=1, status="success")
    assert await stack.db.fetchval(
        "SELECT l.email FROM leads l JOIN dialog_analysis d ON d.lead_id = l.id WHERE d.id = $1", dialog
    ) == "john_smith@gmail.com"
    [event] = await stack.sent_events(1)
    assert event["user_data"]["em"] == [META_EXAMPLE_DIGEST]


async def test_bitrix24_contact_email_goes_out_as_em(launch: Launch) -> None:
    answered = {"field_id": "UF_CRM_1721244499001", "field_type": "enumeration", "enum_id": "61",
                "entity_type": "deal"}
    stack: Stack = await launch(connection="b24-main", qualified=[answered])
    await whatsapp_dialog(stack.db, "79161234567")  # deal 759 → contact 84, EMAIL " Irina.K@Example.com "
    await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    await stack.log_rows("bitrix24:b24-main:deal:759", count=2, status="success")
    events = await stack.sent_events(2)
    digest = hashlib.sha256(b"irina.k@example.com").hexdigest()
    assert [e["user_data"].get("em") for e in events] == [[digest], [digest]]
    assert await stack.db.fetchval("SELECT email FROM leads") == "irina.k@example.com"


async def test_an_email_is_kept_even_before_any_level(launch: Launch) -> None:
    """A contact edited before any field matches still gives the lead its email, so a later event
    (from the WhatsApp analysis, say) carries it; a contact without one leaves the lead's alone."""
    stack: Stack = await launch(interest=[{"field_id": "93713", "enum_id": "1"}])  # matches nothing
    stack.amo.add_contact(148775, "+7 (916) 123-45-67", fields=[email_field("Ann@Example.com")])
    await whatsapp_dialog(stack.db, "79161234567")
    await stack.post(amo_path(), body("amocrm/webhook-update-contact.txt"))
    await stack.jobs_done()
    assert await stack.db.fetchval("SELECT email FROM leads") == "ann@example.com"
    stack.amo.add_contact(148775, "+7 (916) 123-45-67")  # the email was removed in the CRM
    await stack.post(amo_path(), body("amocrm/webhook-update-contact.txt"))
    await stack.jobs_done()
    assert await stack.db.fetchval("SELECT email FROM leads") == "ann@example.com"
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 0
