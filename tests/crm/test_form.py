"""PHP-bracket form bodies, plain and percent-encoded, as amoCRM and Bitrix24 send them."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.errors import QualibotError
from core.web import http_status
from crm import webhook_amocrm, webhook_bitrix24
from crm.connections import Connection
from crm.form import MAX_DEPTH, MAX_KEY_CHARS, FormError, indexed, items, parse_form, split_key, text

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


def test_limits_are_checked_before_the_work() -> None:
    with pytest.raises(FormError, match="longer than 512"):
        parse_form(b"a" + b"[]" * 500_000 + b"=1")  # a megabyte key: refused for its length, not split
    with pytest.raises(FormError, match="deeper than 12"):
        split_key("a" + "[b]" * MAX_DEPTH)
    assert split_key("a" + "[b]" * (MAX_DEPTH - 1)) == ["a"] + ["b"] * (MAX_DEPTH - 1)
    assert len(split_key("k" * MAX_KEY_CHARS)) == 1
    with pytest.raises(FormError, match="Max number of fields"):
        parse_form(b"&".join(b"f%d=1" % i for i in range(11)), max_fields=10)
    assert len(parse_form(b"&".join(b"f%d=1" % i for i in range(10)), max_fields=10)) == 10


def test_non_ascii_digits_are_names_not_indexes() -> None:
    # `²`.isdigit() is True but int("²") raises: it sorts as a name now, after the numbers
    form = parse_form("a[²]=sq&a[٣]=arabic&a[10]=ten&a[9]=nine".encode())
    assert [k for k, _ in indexed(form["a"])] == ["9", "10", "²", "٣"]


# keys built from what a PHP form key can hold, brackets and their percent-encoded forms included
_KEY_TEXT = st.lists(st.sampled_from([*"ab0²٣[]=&% +;", "%5B", "%5D", "%ff", "%00", "\x00"]), max_size=40).map("".join)
_PART = st.text(alphabet=st.characters(blacklist_characters="[]&=%+;#", blacklist_categories=("Cs",)), max_size=8)


@settings(max_examples=400, deadline=None)
@given(st.one_of(st.binary(max_size=300), _KEY_TEXT.map(str.encode),
                 st.lists(st.tuples(_KEY_TEXT, _KEY_TEXT), max_size=8).map(
                     lambda pairs: "&".join(f"{k}={v}" for k, v in pairs).encode())))
def test_any_body_parses_or_raises_form_error(raw: bytes) -> None:
    """Only our own error comes out of the parser, and out of both webhook readers after it."""
    try:
        form = parse_form(raw)
    except FormError:
        return
    for index, _ in indexed(form):
        assert isinstance(index, str)
    _webhook_parsers_raise_only_domain_errors(form)


@settings(max_examples=200, deadline=None)
@given(st.lists(_PART.filter(bool), min_size=1, max_size=MAX_DEPTH))
def test_split_key_reads_back_what_was_written(parts: list[str]) -> None:
    key = parts[0] + "".join(f"[{p}]" for p in parts[1:])
    if len(key) <= MAX_KEY_CHARS:
        assert split_key(key) == parts
        # parse_form drops NUL (PostgreSQL cannot store it) before splitting: a first part of NULs only
        # leaves an empty key (skipped) or one that starts with a bracket, refused like any other
        if parts[0].replace("\x00", "") or len(parts) == 1:
            assert parse_form(f"{quote(key)}=v".encode()) is not None
        else:
            with pytest.raises(FormError, match="starts with a bracket"):
                parse_form(f"{quote(key)}=v".encode())


CONNECTION = Connection(id="c", type="amocrm", account_id="a", default_region="RU", base_url=None, rest_url=None,
                        access_token=None, crm_account_id="1", subdomain="clinic", webhook_secret="s" * 16,
                        application_token="t" * 16, rate_limit_per_second=None)

_SECTION = st.sampled_from(["leads", "contacts", "companies", "tasks", "account", "event", "data", "auth"])
_WORD = st.sampled_from(["add", "update", "delete", "status", "0", "1", "²", "٣", "id", "ID", "FIELDS", "type",
                         "company", "subdomain", "clinic", "application_token", "t" * 16, "ONCRMDEALUPDATE",
                         "9" * 30, ""])


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(st.lists(st.one_of(_SECTION, _WORD), min_size=1, max_size=5), _WORD), max_size=10))
def test_webhook_parsers_on_any_form_raise_only_domain_errors(pairs: list[tuple[list[str], str]]) -> None:
    body = "&".join(parts[0] + "".join(f"[{p}]" for p in parts[1:]) + "=" + quote(value) for parts, value in pairs)
    try:
        form = parse_form(body.encode())
    except FormError:
        return
    _webhook_parsers_raise_only_domain_errors(form)


def _webhook_parsers_raise_only_domain_errors(form: dict[str, object]) -> None:
    for step in (lambda: webhook_amocrm.check_account(form, CONNECTION), lambda: webhook_amocrm.parse(form),
                 lambda: webhook_bitrix24.token_matches(form, CONNECTION), lambda: webhook_bitrix24.parse(form)):
        try:
            step()
        except QualibotError as exc:  # a domain error the middleware answers with a 4xx
            assert 400 <= http_status(exc) < 500 and exc.detail
