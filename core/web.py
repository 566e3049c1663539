"""HTTP plumbing shared by every package's routes: the context key and the JSON error shape."""

from __future__ import annotations

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
    if not raw:
        raise ApiError(400, "empty_body", "the request body is empty; a JSON object was expected")
    import json

    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(400, "invalid_json", f"the body is not valid JSON: {exc}") from exc
