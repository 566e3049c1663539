"""HTTP plumbing shared by every package's routes: the context key and the JSON error shape."""

from __future__ import annotations

import asyncio
import json
import math
import re
from typing import Any

from aiohttp import web

from core.context import AppContext
from core.errors import BadInput, NotFound, Permanent, QualibotError, Retryable, Unauthorized

CTX: web.AppKey[AppContext] = web.AppKey("ctx", AppContext)


class ApiError(QualibotError):
    """An HTTP-level refusal (a body too slow or too large, a route's own check) with its status;
    the error middleware renders it as `{"error": code, "detail": text}`. Parsers and domain code
    raise domain errors (`core.errors`) instead, and `http_status` gives their status."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail, code=code)
        self.status = status
        self.extra = extra


class BadJson(BadInput):
    """The body is not JSON we accept; `code` says which way (invalid_json, json_too_deep, ...)."""


# The one translation of domain errors to HTTP statuses, first match wins. A Retryable is 503 so
# peers retry (Evolution and amoCRM retry 5xx, not 4xx); any other error of ours is our bug: 500.
HTTP_STATUS: tuple[tuple[type[QualibotError], int], ...] = (
    (BadInput, 400), (Unauthorized, 401), (NotFound, 404), (Retryable, 503), (Permanent, 500),
)


def http_status(exc: QualibotError) -> int:
    if isinstance(exc, ApiError):
        return exc.status
    return next((status for kind, status in HTTP_STATUS if isinstance(exc, kind)), 500)


def is_digits(text: str) -> bool:
    """ASCII digits only: `str.isdigit()` alone also takes `²` (which int() refuses) and other scripts' digits."""
    return text.isascii() and text.isdigit()


def error_response(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "detail": detail, **extra}, status=status)


async def read_body(request: web.Request) -> bytes:
    """The whole body, which must arrive within `body_timeout_seconds` of the headers: a client that
    trickles it gets 408 and its connection is closed (413 comes from aiohttp's size limit)."""
    try:
        async with asyncio.timeout(request.app[CTX].settings.body_timeout_seconds):
            return await request.read()
    except TimeoutError:
        raise ApiError(408, "body_timeout", "the request body did not arrive in time") from None


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or a 400 that says why not (413 comes from aiohttp's size limit)."""
    return parse_json(await read_body(request))


MAX_JSON_DEPTH = 32  # Evolution's messages nest 6 deep (a quoted message adds a few); json.loads recurses
# values (array elements and object members) per body: Evolution 2.3.6+ sends protobuf bytes as objects
# of one member per byte (a thumbnail: a few thousand); decoding 250,000 takes ~50 ms
MAX_JSON_VALUES = 250_000


class _Refused(ValueError):
    """A number json.loads would accept but a webhook never carries."""


def _finite(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise _Refused(f"the number {text[:40]} is out of range (non-finite once decoded)")
    return value


def _no_constant(name: str) -> Any:
    raise _Refused(f"{name} is not a JSON number")


# parse_float is called only for numbers with a fraction or exponent (few in a webhook); integers keep
# json's C path, bounded by Python's limit on int() digits (4,300, checked before the quadratic work)
_DECODER = json.JSONDecoder(parse_float=_finite, parse_constant=_no_constant)


def parse_json(raw: bytes) -> Any:
    """`raw` decoded as JSON in time linear in its size; BadJson naming what is wrong.

    Refused before decoding: nesting deeper than MAX_JSON_DEPTH (json.loads recurses, and a 1 MB
    `[[[[` would end in a RecursionError), more than MAX_JSON_VALUES values. Refused while decoding:
    `NaN`/`Infinity` (json accepts them by default), numbers that overflow to infinity (`1e400`),
    integers longer than Python's int digit limit (`sys.get_int_max_str_digits()`, 4,300 by default).
    """
    if not raw.strip():
        raise BadJson(code="empty_body", detail="the request body is empty; a JSON object was expected")
    try:
        text = raw.decode(json.detect_encoding(raw), "surrogatepass")
    except UnicodeDecodeError as exc:
        raise BadJson(code="invalid_json", detail=f"the body is not valid JSON: {exc}") from exc
    problem = _shape_problem(text)
    if problem is not None:
        if problem[0] == "json_too_deep":
            try:  # tell a body that is merely broken from one that is too deep: json recurses 1,000 at most
                json.loads(text)
            except json.JSONDecodeError as exc:
                raise BadJson(code="invalid_json", detail=f"the body is not valid JSON: {exc}") from exc
            except (RecursionError, ValueError):
                pass
        raise BadJson(problem[1], code=problem[0])
    try:
        data = _DECODER.decode(text)
    except RecursionError as exc:  # only a body that is not JSON gets past _shape_problem this deep
        raise BadJson(code="json_too_deep", detail=f"the JSON nests deeper than {MAX_JSON_DEPTH} levels") from exc
    except _Refused as exc:
        raise BadJson(code="invalid_number", detail=str(exc)) from exc
    except json.JSONDecodeError as exc:
        raise BadJson(code="invalid_json", detail=f"the body is not valid JSON: {exc}") from exc
    except ValueError as exc:  # int(): "Exceeds the limit (4300 digits) for integer string conversion"
        raise BadJson(code="invalid_number", detail=f"an integer has too many digits: {str(exc)[:80]}") from exc
    return clean_strings(data) if _UNSAFE.search(raw) else data


# Outside strings only brackets are kept, curly ones as square (depth does not care which).
_BRACKETS = str.maketrans("{}", "[]", "".join(chr(c) for c in range(128) if chr(c) not in "[]{}"))


def _shape_problem(text: str) -> tuple[str, str] | None:
    """(code, detail) when the JSON outside its strings nests deeper than MAX_JSON_DEPTH or holds more
    than MAX_JSON_VALUES values (bounding what json.loads builds); None when it is within both.

    Exact for valid JSON, where a backslash only occurs in a string and escapes the next character:
    deleting `\\` pairs then `\"` (left to right, as a tokenizer reads them) leaves every remaining
    quote a string delimiter. Invalid JSON may be misjudged either way; json.loads then refuses it.
    Each pass deletes the innermost bracket pairs, one level: a document within the limit has none
    left after MAX_JSON_DEPTH passes. Every step is a C pass over the text (count, split, translate,
    replace): linear, and cheap enough for a 32 MiB body."""
    if text.count("[") + text.count("{") <= MAX_JSON_DEPTH and text.count(",") < MAX_JSON_VALUES:
        return None  # the usual webhook, whose bulk is one base64 string
    unescaped = text.replace("\\\\", "").replace('\\"', "")
    outside = "".join(unescaped.split('"')[0::2])
    if outside.count(",") >= MAX_JSON_VALUES:
        return "json_too_large", f"the JSON holds more than {MAX_JSON_VALUES} values"
    brackets = outside.translate(_BRACKETS)
    for _ in range(MAX_JSON_DEPTH):
        if not brackets:
            return None
        shorter = brackets.replace("[]", "")
        if len(shorter) == len(brackets):
            break  # unbalanced
        brackets = shorter
    if not brackets:
        return None
    return "json_too_deep", f"the JSON nests arrays and objects deeper than {MAX_JSON_DEPTH} levels"


# A NUL or a lone surrogate reaches a decoded string only through a \u escape, raw UTF-8-encoded
# surrogates (json.loads decodes bytes with surrogatepass) or a UTF-16/32 body (NUL bytes): bodies
# with none of these skip the clean_strings walk, which costs more than the parse itself.
_UNSAFE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]|\x00")


def storable_text(value: str) -> str:
    """Text PostgreSQL can store: NUL dropped, lone UTF-16 surrogates (a JavaScript string cut inside
    an emoji, as peers do send) replaced by U+FFFD."""
    if "\x00" in value:
        value = value.replace("\x00", "")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
        value = "".join("\ufffd" if 0xD800 <= ord(c) <= 0xDFFF else c for c in value)
    return value


def storable(text: str) -> bool:
    """PostgreSQL can hold `text` as it is: ids from a URL or a header are checked before any SQL
    (a DataError from our SQL is a 500, our bug, not the client's)."""
    return storable_text(text) == text


def clean_strings(value: Any, depth: int = 0) -> Any:
    """`storable_text` applied to every string (and key) of a decoded JSON document."""
    if isinstance(value, str):
        return storable_text(value)
    if depth > 64:
        return value
    if isinstance(value, dict):
        return {storable_text(k) if isinstance(k, str) else k: clean_strings(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_strings(v, depth + 1) for v in value]
    return value
