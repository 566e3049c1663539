"""Webhook JSON (`core.web.parse_json`): what json.loads would accept or crash on but a webhook never
carries is a 400 naming what is wrong, decided in time linear in the body."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.web import MAX_JSON_DEPTH, MAX_JSON_VALUES, BadJson, clean_strings, http_status, parse_json


def refused(raw: bytes) -> BadJson:
    with pytest.raises(BadJson) as caught:
        parse_json(raw)
    assert http_status(caught.value) == 400 and caught.value.detail
    return caught.value


@pytest.mark.parametrize(
    ("raw", "code", "says"),
    [
        (b"[" * 1_000_000, "json_too_deep", "deeper than 32"),  # json.loads: RecursionError
        (b'{"a":' * 200_000 + b"1" + b"}" * 200_000, "json_too_deep", "deeper than 32"),
        (b'{"messageTimestamp": Infinity}', "invalid_number", "Infinity"),
        (b'{"messageTimestamp": -Infinity}', "invalid_number", "-Infinity"),
        (b'{"messageTimestamp": NaN}', "invalid_number", "NaN"),
        (b'{"messageTimestamp": 1e400}', "invalid_number", "1e400"),
        (b'{"messageTimestamp": -1e400}', "invalid_number", "-1e400"),
        (b'{"messageTimestamp": ' + b"9" * 100_000 + b"}", "invalid_number", "too many digits"),
        (b"[" + b"0," * MAX_JSON_VALUES + b"0]", "json_too_large", "more than 250000 values"),
        (b"[" * 40 + b"]" * 39, "invalid_json", "not valid JSON"),  # unbalanced, not merely deep
        (b"", "empty_body", "empty"),
        (b"\xff\xfe\x00", "invalid_json", "not valid JSON"),
    ],
)
def test_hostile_bodies_are_400_with_the_reason(raw: bytes, code: str, says: str) -> None:
    error = refused(raw)
    assert (error.code, says in error.detail) == (code, True), error.detail


def test_depth_up_to_the_limit_and_brackets_in_strings_are_fine() -> None:
    deep = "[" * MAX_JSON_DEPTH + "]" * MAX_JSON_DEPTH
    assert parse_json(deep.encode()) == json.loads(deep)
    refused(("[" * (MAX_JSON_DEPTH + 1) + "]" * (MAX_JSON_DEPTH + 1)).encode())
    # brackets, quotes and backslashes inside strings are text, not structure
    text = {"t": "[" * 100 + '\\"[{' * 50, "u": ["\\", "\\\\", '"', "]]]"]}
    assert parse_json(json.dumps(text).encode()) == text
    # UTF-16 bodies (json.loads detects them) are read the same
    assert parse_json(json.dumps({"a": [[1]]}).encode("utf-16")) == {"a": [[1]]}


def _depth(value: Any) -> int:
    if isinstance(value, dict):
        return 1 + max(map(_depth, value.values()), default=0)
    if isinstance(value, list):
        return 1 + max(map(_depth, value), default=0)
    return 0


_TEXT = st.text(alphabet=st.sampled_from([*'ab[]{}"\\,:', "\u00b2", "\u0663", "\x00", "\ud800"]), max_size=6)
_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | _TEXT


def _nested(depth: int) -> st.SearchStrategy[Any]:
    """Documents whose depth is exactly `depth` along one path (others shallower)."""
    if depth == 0:
        return _SCALARS
    inner = _nested(depth - 1)
    return st.one_of(st.lists(_SCALARS, max_size=2).flatmap(lambda xs: inner.map(lambda x: [*xs, x])),
                     st.dictionaries(_TEXT, _SCALARS, max_size=2).flatmap(
                         lambda d: st.tuples(_TEXT, inner).map(lambda kv: {**d, kv[0]: kv[1]})))


@settings(max_examples=300, deadline=None)
@given(st.integers(min_value=0, max_value=MAX_JSON_DEPTH + 8).flatmap(_nested))
def test_documents_are_accepted_exactly_up_to_the_depth_limit(doc: Any) -> None:
    raw = json.dumps(doc).encode()
    if _depth(doc) <= MAX_JSON_DEPTH:
        assert parse_json(raw) == clean_strings(doc)  # as json.loads reads it, NUL and lone surrogates cleaned
    else:
        assert refused(raw).code == "json_too_deep"


_TOKENS = st.sampled_from(['[', ']', '{', '}', '"', '\\', ',', ':', '1', '-', 'e', '.', 'Infinity', 'NaN', 'null',
                           '1e999', '9' * 5000, '"a"', '\u00b2', '\ufeff', ' '])


@settings(max_examples=500, deadline=None)
@given(st.one_of(st.binary(max_size=200), st.lists(_TOKENS, max_size=60).map(lambda t: "".join(t).encode()),
                 st.recursive(_SCALARS, lambda c: st.lists(c) | st.dictionaries(_TEXT, c), max_leaves=20).map(
                     lambda d: json.dumps(d).encode())))
def test_any_body_decodes_or_raises_bad_json(raw: bytes) -> None:
    """Only our own error type comes out: no RecursionError, ValueError or UnicodeError."""
    try:
        parse_json(raw)
    except BadJson as exc:
        assert http_status(exc) == 400
