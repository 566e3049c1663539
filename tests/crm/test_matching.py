"""Configured fields against CRM values as the APIs really return them (the fixtures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from crm import amocrm, bitrix24
from crm.entity import CrmRecord
from crm.matching import as_bool, field_matches, label_fields, levels_reached

FIXTURES = Path(__file__).parent / "fixtures"


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def amo_lead(**changes: Any) -> CrmRecord:
    lead = load("amocrm/api-lead-with-contacts.json") | changes
    contact = load("amocrm/api-contact.json")
    return CrmRecord("amocrm", "lead", str(lead["id"]),
                     [amocrm.field_set("lead", lead), amocrm.field_set("contact", contact)], amocrm.phones(contact))


def b24_deal(labels: dict[str, dict[str, str]] | None = None, **changes: Any) -> CrmRecord:
    deal = load("bitrix24/rest-crm.deal.get.json")["result"] | changes
    contact = load("bitrix24/rest-crm.contact.get.json")["result"]
    return CrmRecord("bitrix24", "deal", deal["ID"],
                     [bitrix24.field_set("deal", deal, labels), bitrix24.field_set("contact", contact)],
                     bitrix24.phones(contact))


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"field_id": "93713", "field_type": "select", "enum_id": "45997"}, True),
        ({"field_id": 93713, "enum_id": 45997}, True),  # ints from a hand-written config
        ({"field_id": "93713", "enum_id": "45999"}, False),
        ({"field_id": "93713", "enum_value": "заинтересован"}, True),  # by text when no id
        ({"field_id": "93713", "enum_id": "1", "enum_value": "Заинтересован"}, False),  # the id decides
        ({"field_id": "93721", "field_type": "checkbox"}, True),
        ({"field_id": "93753", "field_type": "text", "value": "facebook"}, True),
        ({"field_id": "93753", "field_type": "text", "value": "vk"}, False),
        ({"field_id": "93709", "field_type": "numeric", "value": "10000.00"}, True),  # "10000" is a string
        ({"field_id": "93719", "field_type": "date", "value": "1711918800"}, True),  # an int date
        ({"field_id": "99999", "enum_id": "45997"}, False),  # a field the lead does not have
        ({"field_id": "pipeline_status", "enum_id": "6254262:53861255"}, True),
        ({"field_id": "pipeline_status", "enum_id": "6254262:142"}, False),
        ({"field_id": "45961", "value": "+7 (916) 123-45-67"}, True),  # a contact field counts too
        ({"field_id": "93713", "enum_id": "45997", "entity_type": "contact"}, False),
    ],
)
def test_amocrm_fields(cfg: dict[str, Any], expected: bool) -> None:
    assert field_matches(cfg, amo_lead()) is expected


def test_amocrm_null_custom_fields_match_nothing_but_the_stage() -> None:
    record = amo_lead(custom_fields_values=None)
    assert not field_matches({"field_id": "93721", "field_type": "checkbox"}, record)
    assert field_matches({"field_id": "pipeline_status", "value": "6254262:53861255"}, record)


def test_amocrm_multiselect_string_dates_and_false_checkbox() -> None:
    fields = [
        {"field_id": 1, "field_type": "multiselect", "values": [{"value": "A", "enum_id": 11, "enum_code": None},
                                                               {"value": "B", "enum_id": 12, "enum_code": None}]},
        {"field_id": 2, "field_type": "date", "values": [{"value": "2020-05-08"}]},
        {"field_id": 3, "field_type": "checkbox", "values": [{"value": False}]},
        {"field_id": 4, "field_type": "radiobutton", "values": [{"value": "Да", "enum_id": 41, "enum_code": None}]},
    ]
    record = amo_lead(custom_fields_values=fields)
    assert field_matches({"field_id": "1", "enum_id": "12"}, record)
    assert field_matches({"field_id": "1", "enum_value": "a"}, record)
    assert field_matches({"field_id": "2", "value": "2020-05-08"}, record)
    assert not field_matches({"field_id": "3", "field_type": "checkbox"}, record)
    assert field_matches({"field_id": "3", "field_type": "checkbox", "value": "0"}, record)
    assert field_matches({"field_id": "4", "enum_id": "41"}, record)


@pytest.mark.parametrize(
    ("cfg", "expected"),
    [
        ({"field_id": "UF_CRM_1721244499001", "field_type": "enumeration", "enum_id": "61"}, True),
        ({"field_id": "UF_CRM_1721244499001", "enum_id": 63}, True),  # array of item ids
        ({"field_id": "UF_CRM_1721244499001", "enum_id": "65"}, False),
        ({"field_id": "UF_CRM_1721244482250", "enum_id": "45"}, True),  # a single item id string
        ({"field_id": "UF_CRM_1721244510077", "field_type": "boolean"}, True),  # "1"
        ({"field_id": "STAGE_ID", "enum_id": "C1:PREPARATION"}, True),
        ({"field_id": "STAGE_ID", "enum_id": "C1:WON"}, False),
        ({"field_id": "UTM_SOURCE", "value": "facebook"}, True),
        ({"field_id": "UF_CRM_1721244482250", "enum_id": "45", "entity_type": "deal"}, True),
        ({"field_id": "UF_CRM_1721244482250", "enum_id": "45", "entity_type": "lead"}, False),
        ({"field_id": "SOURCE_ID", "value": "WEB", "entity_type": "contact"}, True),  # the deal's contact
        ({"field_id": "UF_CRM_1721244482250", "enum_value": "Заинтересован"}, False),  # no labels read
    ],
)
def test_bitrix24_fields(cfg: dict[str, Any], expected: bool) -> None:
    assert field_matches(cfg, b24_deal()) is expected


def test_bitrix24_enum_text_needs_the_userfield_lists() -> None:
    userfields = load("bitrix24/rest-crm.deal.userfield.list.json")["result"]
    labels = {uf["FIELD_NAME"]: {i["ID"]: i["VALUE"] for i in uf.get("LIST", [])} for uf in userfields}
    record = b24_deal(labels)
    assert field_matches({"field_id": "UF_CRM_1721244482250", "enum_value": "Заинтересован"}, record)
    assert field_matches({"field_id": "UF_CRM_1721244499001", "enum_value": "Бюджет подтверждён"}, record)
    assert not field_matches({"field_id": "UF_CRM_1721244482250", "enum_value": "Не заинтересован"}, record)
    configured = [{"field_id": "UF_CRM_1721244482250", "enum_value": "x"}, {"field_id": "A", "enum_id": "1"}]
    assert label_fields([configured]) == {"UF_CRM_1721244482250"}


@pytest.mark.parametrize("raw", ["1", "Y", "y", True, 1, "true"])
def test_bitrix24_booleans_true_in_every_spelling(raw: Any) -> None:
    record = b24_deal(UF_CRM_1721244510077=raw)
    assert field_matches({"field_id": "UF_CRM_1721244510077", "field_type": "boolean"}, record)
    assert field_matches({"field_id": "UF_CRM_1721244510077", "field_type": "boolean", "value": "Y"}, record)


@pytest.mark.parametrize("raw", ["0", "N", False, 0, "", None])
def test_bitrix24_booleans_false_in_every_spelling(raw: Any) -> None:
    record = b24_deal(UF_CRM_1721244510077=raw)
    assert not field_matches({"field_id": "UF_CRM_1721244510077", "field_type": "boolean"}, record)


def test_levels_are_or_within_a_level_and_ascending() -> None:
    fields = {
        1: [{"field_id": "93713", "enum_id": "1"}, {"field_id": "93713", "enum_id": "45997"}],  # second matches
        2: [{"field_id": "93753", "value": "vk"}],
        3: [{"field_id": "93721", "field_type": "checkbox"}],
    }
    assert levels_reached(fields, amo_lead()) == [1, 3]
    assert levels_reached({1: [], 2: [], 3: []}, amo_lead()) == []


def test_as_bool_leaves_non_booleans_alone() -> None:
    assert as_bool("Заинтересован") is None and as_bool(2) is None and as_bool(None) is None
