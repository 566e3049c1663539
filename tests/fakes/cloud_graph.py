"""The fake Graph with WhatsApp Cloud API endpoints beside CAPI's (both live under META_GRAPH_URL).

- `POST /{version}/{phone_number_id}/messages`: a text message as Meta's "Send messages" reference
  shows it (`messaging_product: whatsapp`, `to`, `type: text`, `text.body`), the number's token as
  `Authorization: Bearer`; answers `tests/bot/fixtures/cloud/graph-send-success.json` with a fresh
  wamid. Refuses a wrong token (190, fixture graph-error-190.json), an unknown number (100/33, the
  CAPI fixture's shape), a body that is not such a message (100: code 100 "Invalid parameter" is on
  the error codes page, https://developers.facebook.com/documentation/business-messaging/whatsapp/support/error-codes;
  the exact "(#100) Invalid parameter" message text is a guess); `cloud_script` queues error
  fixtures (`"131047"`, `"131026"`, `"130429"`, `"190"`) for the next sends.
- `GET /{version}/{phone_number_id}`: the number (fixture graph-phone-number.json), for `doctor --online`.
`sent` lists the messages accepted, with the wamid answered.
"""

from __future__ import annotations

import copy
import json
import secrets
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.graph import FakeGraph

FIXTURES = Path(__file__).resolve().parent.parent / "bot" / "fixtures" / "cloud"
STATUS = {"131047": 400, "131026": 400, "130429": 429, "190": 401}


def cloud_fixture(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return loaded


def _error(code: str) -> web.Response:
    body = copy.deepcopy(cloud_fixture(f"graph-error-{code}.json"))
    body["error"]["fbtrace_id"] = "A" + secrets.token_hex(6)
    return web.json_response(body, status=STATUS[code])


def _invalid(message: str, subcode: int | None = None) -> web.Response:
    error: dict[str, Any] = {"message": message, "type": "OAuthException", "code": 100,
                             "fbtrace_id": "A" + secrets.token_hex(6)}
    if subcode is not None:
        error["error_subcode"] = subcode
    return web.json_response({"error": error}, status=400)


class FakeCloudGraph(FakeGraph):
    def __init__(self, *, numbers: dict[str, str], **kwargs: Any) -> None:
        self.numbers = dict(numbers)  # phone_number_id → its access token
        self.sent: list[dict[str, Any]] = []
        self.cloud_script: deque[str] = deque()
        super().__init__(**kwargs)

    def setup(self, app: web.Application) -> None:
        super().setup(app)
        app.router.add_post("/{version}/{phone_number_id}/messages", self._messages)
        app.router.add_get("/{version}/{phone_number_id}", self._phone_number)

    def _refusal(self, request: web.Request) -> web.Response | None:
        number = request.match_info["phone_number_id"]
        if number not in self.numbers:
            return _invalid(f"Unsupported post request. Object with ID '{number}' does not exist", 33)
        if request.headers.get("Authorization") != f"Bearer {self.numbers[number]}":
            return _error("190")
        return None

    async def _messages(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except ValueError:
            return _invalid("(#100) Invalid parameter")
        ok = (isinstance(body, dict) and body.get("messaging_product") == "whatsapp" and body.get("type") == "text"
              and isinstance(body.get("to"), str) and isinstance(body.get("text"), dict)
              and isinstance(body["text"].get("body"), str) and body["text"]["body"])
        if not ok:
            return _invalid("(#100) Invalid parameter")
        if self.cloud_script:
            return _error(self.cloud_script.popleft())
        answer = copy.deepcopy(cloud_fixture("graph-send-success.json"))
        wamid = "wamid.fake" + secrets.token_hex(12)
        answer["contacts"] = [{"input": body["to"], "wa_id": body["to"]}]
        answer["messages"] = [{"id": wamid}]
        self.sent.append({"phone_number_id": request.match_info["phone_number_id"], "wamid": wamid,
                          "authorization": request.headers.get("Authorization"), **body})
        return web.json_response(answer)

    async def _phone_number(self, request: web.Request) -> web.Response:
        refused = self._refusal(request)
        if refused is not None:
            return refused
        answer = copy.deepcopy(cloud_fixture("graph-phone-number.json"))
        answer["id"] = request.match_info["phone_number_id"]
        return web.json_response(answer)
