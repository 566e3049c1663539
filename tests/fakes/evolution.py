"""A fake Evolution API: `POST /message/sendText/{instance}` as Evolution 2.3.x answers it.

- 201 with the `prepareMessage` shape of fixtures/evolution/send-text-response.json, a fresh key id
  per send (`sent_ids` lists them), after holding the answer for the body's `delay` milliseconds;
- `mode` scripts failures with Evolution's error shape: "unauthorized" (401), "unknown_instance"
  (404), "not_on_whatsapp" (400 `exists: false`), "server_error" (500), "hang" (never answers in time);
- a wrong `apikey` header is a 401 and an instance not in `instances` a 404, as the real one does.
Every request is recorded in `requests` (headers, JSON body, instance).
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

FIXTURE = Path(__file__).resolve().parents[1] / "bot" / "fixtures" / "evolution" / "send-text-response.json"
_FALLBACK = {
    "key": {"remoteJid": "", "fromMe": True, "id": ""}, "pushName": "Você", "status": "PENDING",
    "message": {"conversation": ""}, "contextInfo": {"mentionedJid": [], "groupMentions": []},
    "messageType": "conversation", "messageTimestamp": 0,
    "instanceId": "84811dcf-3941-4304-b9a4-1f58f378feae", "source": "web",
}


def _template() -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(FIXTURE.read_text(encoding="utf-8"))
        return data
    except OSError:
        return copy.deepcopy(_FALLBACK)


def _error(status: int, error: str, message: Any) -> web.Response:
    return web.json_response({"status": status, "error": error, "response": {"message": message}}, status=status)


class FakeEvolution(FakeServer):
    def __init__(self, api_key: str = "instance-api-key", instances: tuple[str, ...] = ("clinic-main",)) -> None:
        self.api_key = api_key
        self.instances = set(instances)
        self.mode = "ok"
        self.sent_ids: list[str] = []
        self._ids = itertools.count(0x60123)
        self._template = _template()
        super().__init__()

    def setup(self, app: web.Application) -> None:
        app.router.add_post("/message/sendText/{instance}", self._send_text)

    def texts(self) -> list[str]:
        return [str(r["json"].get("text")) for r in self.requests]

    async def _send_text(self, request: web.Request) -> web.Response:
        instance = request.match_info["instance"]
        try:
            body: Any = await request.json()
        except ValueError:
            body = None
        self.requests.append({"headers": dict(request.headers), "json": body or {}, "instance": instance})
        if self.mode == "unauthorized" or request.headers.get("apikey") != self.api_key:
            return _error(401, "Unauthorized", "Unauthorized")
        if self.mode == "unknown_instance" or instance not in self.instances:
            return _error(404, "Not Found", [f'The "{instance}" instance does not exist'])
        if not isinstance(body, dict) or not body.get("number"):
            return _error(400, "Bad Request", ['instance requires property "number"'])
        if not body.get("text"):
            return _error(400, "Bad Request", ["Text is required"])
        number = str(body["number"])
        jid = number if "@" in number else f"{number}@s.whatsapp.net"
        if self.mode == "not_on_whatsapp":
            return _error(400, "Bad Request", [{"jid": jid, "exists": False, "number": number}])
        if self.mode == "server_error":
            return _error(500, "Internal Server Error", ["Error: Connection Closed"])
        if self.mode == "hang":
            await asyncio.sleep(3600)
        delay = body.get("delay")
        if isinstance(delay, int) and delay > 0:
            await asyncio.sleep(delay / 1000)
        answer = copy.deepcopy(self._template)
        message_id = f"3EB0B2F1C4A7D9E8F{next(self._ids):05X}"
        self.sent_ids.append(message_id)
        answer["key"] = {"remoteJid": jid, "fromMe": True, "id": message_id}
        answer["message"] = {"conversation": body["text"]}
        return web.json_response(answer, status=201)


# --- GET /instance/connectionState/{instance}, for `doctor --online` ---------------------------------
# evolution-api 2.3.7: src/api/routes/instance.router.ts runs the guards instanceExistsGuard (404
# `The "<name>" instance does not exist`), instanceLoggedGuard, then authGuard.apikey (401
# Unauthorized unless the `apikey` header is the global key or the instance's token), and
# src/api/controllers/instance.controller.ts connectionState answers 200 {"instance": {"instanceName",
# "state"}}, state being Baileys' connection state open | connecting | close (undefined, so absent,
# for an instance stored but not loaded).
@dataclass
class ConnectionStates:
    """What the route answers per instance (absent: "open"; None: no state) and what it was asked."""

    states: dict[str, str | None] = field(default_factory=dict)
    requests: list[dict[str, Any]] = field(default_factory=list)


def serve_connection_state(fake: FakeEvolution) -> ConnectionStates:
    """Adds the route to `fake` (before `start()`)."""
    served = ConnectionStates()

    async def connection_state(request: web.Request) -> web.Response:
        instance = request.match_info["instance"]
        served.requests.append({"instance": instance, "apikey": request.headers.get("apikey")})
        if instance not in fake.instances:
            return _error(404, "Not Found", [f'The "{instance}" instance does not exist'])
        if request.headers.get("apikey") != fake.api_key:
            return _error(401, "Unauthorized", "Unauthorized")
        state = served.states.get(instance, "open")
        body: dict[str, Any] = {"instanceName": instance} | ({} if state is None else {"state": state})
        return web.json_response({"instance": body})

    fake.app.router.add_get("/instance/connectionState/{instance}", connection_state)
    return served
