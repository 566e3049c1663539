"""HTTP plumbing shared by every package's routes: the context key and the JSON error shape."""

from __future__ import annotations

import json
import re
from typing import Any

from aiohttp import web

from core.context import AppContext

CTX: web.AppKey[AppContext] = web.AppKey("ctx", AppContext)


class ApiError(Exception):
    """A client error with a stable code; the error middleware renders it as
    `{"error": code, "detail": text}` with the given 4xx status."""

    def __init__(self, status: int, code: str, detail: str, **extra: Any) -> None:
        super().__init__(detail)
        self.status = status
        self.code = code
        self.detail = detail
        self.extra = extra


def error_response(status: int, code: str, detail: str, **extra: Any) -> web.Response:
    return web.json_response({"error": code, "detail": detail, **extra}, status=status)


async def read_json(request: web.Request) -> Any:
    """The body as JSON, or a 400 that says why not (413 comes from aiohttp's size limit)."""
    raw = await request.read()
    if not raw.strip():
        raise ApiError(400, "empty_body", "the request body is empty; a JSON object was expected")
    try:
        data = json.loads(raw)
        return clean_strings(data) if _UNSAFE.search(raw) else data
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc


# A NUL or a lone surrogate reaches a decoded string only through a \u escape, raw UTF-8-encoded
# surrogates (json.loads decodes bytes with surrogatepass) or a UTF-16/32 body (NUL bytes): bodies
# with none of these skip the clean_strings walk, which costs more than the parse itself.
_UNSAFE = re.compile(rb"\\u(?:0000|[dD][89a-fA-F])|\xed[\xa0-\xbf]|\x00")


def clean_text(value: str) -> str:
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


def clean_strings(value: Any, depth: int = 0) -> Any:
    """`clean_text` applied to every string (and key) of a decoded JSON document."""
    if isinstance(value, str):
        return clean_text(value)
    if depth > 64:
        return value
    if isinstance(value, dict):
        return {clean_text(k) if isinstance(k, str) else k: clean_strings(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [clean_strings(v, depth + 1) for v in value]
    return value
