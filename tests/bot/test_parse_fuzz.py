"""Evolution webhook readers (`bot.parse`, `bot.values`) on any decoded JSON: `BadEvent` is the only
error that may come out (a 400 at the route); nothing else, for non-finite or huge numbers,
non-ASCII digits (`²`, Arabic-Indic) or any shape."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from bot.auth import jwt_problem
from bot.parse import BadEvent, parse_envelope, parse_messages
from bot.values import as_bool, as_bytes, as_int, as_text, plain, timestamp

FIXTURES = sorted((Path(__file__).parent / "fixtures" / "evolution").glob("*-2.3.*.json"))
ODD_NUMBERS = ["²", "٣٤٥", "1²", "-", "--5", "9" * 5000, "1e400", "Infinity", "NaN", " 12 ", "0x10", "١٧٧١٣٧٣٥٠٠"]
_SCALARS = st.one_of(
    st.none(), st.booleans(), st.integers(), st.integers(min_value=10**30, max_value=10**300),
    st.floats(), st.sampled_from(ODD_NUMBERS), st.text(max_size=12),
    st.sampled_from(["²@s.whatsapp.net", "٣٤٥٦٧٨٩٠١٢@s.whatsapp.net", "+²²²", "x@lid", "@lid", "status@broadcast"]),
)
_VALUES = st.recursive(_SCALARS, lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=8), c,
                                                                                     max_size=4), max_leaves=12)
_LONGS = st.fixed_dictionaries({"low": _SCALARS, "high": _SCALARS}, optional={"unsigned": _SCALARS})
_PATHS = [("data", "messageTimestamp"), ("data", "key", "remoteJid"), ("data", "key", "remoteJidAlt"),
          ("data", "key", "id"), ("data", "key", "fromMe"), ("data", "message"), ("data", "pushName"),
          ("data", "message", "imageMessage", "jpegThumbnail"), ("data", "contextInfo"), ("event",), ("instance",),
          ("data",), ("data", "message", "extendedTextMessage", "contextInfo", "externalAdReply")]


def _set(doc: Any, path: tuple[str, ...], value: Any) -> None:
    for part in path[:-1]:
        if not isinstance(doc, dict):
            return
        doc = doc.setdefault(part, {})
    if isinstance(doc, dict):
        doc[path[-1]] = value


@st.composite
def mutated(draw: st.DrawFn) -> Any:
    doc = copy.deepcopy(json.loads(draw(st.sampled_from(FIXTURES)).read_text()))
    for path, value in draw(st.lists(st.tuples(st.sampled_from(_PATHS), _VALUES | _LONGS), max_size=4)):
        _set(doc, path, value)
    return doc


@settings(max_examples=400, deadline=None)
@given(st.one_of(mutated(), _VALUES))
def test_evolution_readers_raise_only_bad_event(body: Any) -> None:
    try:
        envelope = parse_envelope(body)
        for ads in (True, False):
            parse_messages(envelope.data, ads=ads, event=envelope.event)
    except BadEvent as exc:
        assert str(exc)


@settings(max_examples=400, deadline=None)
@given(st.one_of(_VALUES, _LONGS))
def test_value_decoders_never_raise(value: Any) -> None:
    number = as_int(value)
    assert number is None or isinstance(number, int)
    assert timestamp(value).tzinfo is not None
    as_bytes(value), as_text(value), as_bool(value), plain(value)


def test_odd_digits_and_non_finite_numbers_read_as_unreadable() -> None:
    for odd in ("²", "٣٤٥", "--5", "9" * 5000, float("inf"), float("nan"), float("-inf")):
        assert as_int(odd) is None
    assert as_int("-17") == -17 and as_int(" 42 ") == 42


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


_JWT_PARTS = st.one_of(st.text(max_size=20), st.binary(max_size=40).map(_b64),
                       st.sampled_from([b"[" * 6000, b'{"alg": NaN}', b'{"alg": "HS256"}', b"9" * 5000, b"\xff",
                                        b'{"exp": 1e400}']).map(_b64))


@settings(max_examples=300, deadline=None)
@given(st.lists(_JWT_PARTS, min_size=1, max_size=4).map(".".join))
def test_jwt_reader_on_any_bearer_says_what_is_wrong(token: str) -> None:
    """Read before the signature is checked, so anything may come: a reason, never an exception."""
    assert isinstance(jwt_problem(token, "s" * 16, 1800.0), str)
