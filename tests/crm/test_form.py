"""PHP-bracket form bodies, plain and percent-encoded, as amoCRM and Bitrix24 send them."""

from __future__ import annotations

from pathlib import Path

import pytest

from crm.form import FormError, items, parse_form, text

FIXTURES = Path(__file__).parent / "fixtures"


def body(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def test_plain_brackets_become_nested_entities() -> None:
    form = parse_form(body("amocrm/webhook-add-lead.txt"))
    lead = form["leads"]["add"]["0"]
    assert lead["id"] == "1190401" and lead["name"] == "Заявка из WhatsApp"
    assert form["account"] == {"subdomain": "clinic", "id": "17769199",
                               "_links": {"self": "https://clinic.amocrm.ru"}}


def test_percent_encoded_brackets_read_the_same() -> None:
    form = parse_form(body("amocrm/webhook-status-lead.txt"))
    lead = form["leads"]["status"]["0"]
    assert lead["status_id"] == "142" and lead["pipeline_id"] == "9217056"
    fields = lead["custom_fields"]
    assert sorted(fields) == ["0", "2", "3"]  # index 1 simply absent
    assert fields["0"]["values"]["0"] == {"value": "Сайт", "enum": "139517"}
    assert fields["2"]["values"]["0"] == "1542067200"  # a date as a bare scalar
    assert fields["3"]["values"]["0"]["value"] == "1"  # a checkbox
    assert lead["tags"]["0"]["name"] == "повторное обращение"


def test_several_entities_keep_their_order() -> None:
    form = parse_form(body("amocrm/webhook-update-two-leads.txt"))
    assert [lead["id"] for lead in items(form["leads"]["update"])] == ["1190401", "1190402"]


def test_bitrix_body_and_text_helper() -> None:
    form = parse_form(body("bitrix24/webhook-deal-update.txt"))
    assert form["event"] == "ONCRMDEALUPDATE"
    assert text(form, "data", "FIELDS", "ID") == "759"
    assert text(form, "auth", "application_token") == "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"  # trailing newline gone
    assert text(form, "auth", "missing") is None and text(form, "data") is None


def test_empty_brackets_append_and_indexes_sort_numerically() -> None:
    form = parse_form(b"a[]=x&a[]=y&b[10]=ten&b[2]=two")
    assert list(items(form["a"])) == ["x", "y"]
    assert list(items(form["b"])) == ["two", "ten"]


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        (b"a=1&a[b]=2", "already holds a value"),
        (b"a[b]=1&a=2", "nested keys already exist"),
        (b"a[b=1", "unclosed bracket"),
        (b"[a]=1", "starts with a bracket"),
        (b"a[b]c=1", "text after a closing bracket"),
        (b"a" + b"[x]" * 20 + b"=1", "nested deeper"),
        (b"a=%ff", "not a form"),
        (b"\xff\xfe", "not UTF-8"),
    ],
)
def test_malformed_bodies_say_why(raw: bytes, why: str) -> None:
    with pytest.raises(FormError, match=why):
        parse_form(raw)
