"""A fake Evolution API: `POST /message/sendText/{instance}` as Evolution 2.3.x answers it.

- 201 with the `prepareMessage` shape of fixtures/evolution/send-text-response.json, a fresh key id
  per send (`sent_ids` lists them), after holding the answer for the body's `delay` milliseconds;
- `mode` scripts failures with Evolution's error shape: "unauthorized" (401), "unknown_instance"
  (404), "not_on_whatsapp" (400 `exists: false`), "server_error" (500), "hang" (never answers in time);
- a wrong `apikey` header is a 401 and an instance not in `instances` a 404, as the real one does.
Every request is recorded in `requests` (headers, JSON body, instance).

It also sends webhooks the way Evolution's `WebhookController.emit` does (evolution-api 2.3.7 and
2.4.0-rc2 `src/api/integrations/event/webhook/webhook.controller.ts`), once `webhook` is set:
- the envelope `{event, instance, data, destination, date_time, sender, server_url, apikey}` (WH:93),
  `apikey` the instance's token only with AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=true, else null
  (`src/api/services/channel.service.ts` `sendDataWebhook`);
- a per-instance webhook sends its configured `headers`; `jwt_key` among them becomes
  `Authorization: Bearer <jwt.sign({iat, exp: iat + 600, app, action}, key, HS256)>`
  (`generateJwtToken`); 2.4.0-rc2 adds `X-Instance-ID`, `X-Instance-Name`, `X-Event-Type`,
  `X-Timestamp` and its User-Agent;
- the global webhook (`WEBHOOK_GLOBAL_URL`) sends no custom header at all;
- `byEvents`: the URL gets `/<event with . and _ as ->`, after a trailing slash too (`…//send-message`).
A successful sendText emits `send.message` with the answer's record, not awaited, as
`sendMessageWithTyping` does (whatsapp.baileys.service.ts 2.3.7 line 2545); `echo_first` sends it
before answering, the order Evolution does not guarantee either way.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import jwt
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


@dataclass
class Webhook:
    """Where and how the fake sends webhooks: one per-instance `/webhook/set` config, or the global one."""

    url: str
    headers: dict[str, str] = field(default_factory=dict)  # per-instance only; may hold `jwt_key`
    by_events: bool = False
    is_global: bool = False  # WEBHOOK_GLOBAL_URL: no custom header is ever sent
    expose_token: bool = True  # AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES (.env.example: true)
    version: str = "2.3.7"  # "2.4.0-rc2" adds the X-Instance-* headers to per-instance webhooks


def evolution_jwt(key: str, now: float | None = None) -> str:
    """The token `generateJwtToken` makes: jsonwebtoken's `jwt.sign(payload, key, {algorithm: 'HS256'})`."""
    iat = int(time.time() if now is None else now)
    return jwt.encode({"iat": iat, "exp": iat + 600, "app": "evolution", "action": "webhook"}, key, "HS256")


class FakeEvolution(FakeServer):
    def __init__(self, api_key: str = "instance-api-key", instances: tuple[str, ...] = ("clinic-main",)) -> None:
        self.api_key = api_key
        self.instances = set(instances)
        self.mode = "ok"
        self.sent_ids: list[str] = []
        self._ids = itertools.count(0x60123)
        self._template = _template()
        self.webhook: Webhook | None = None
        self.echo_first = False
        self.deliveries: list[dict[str, Any]] = []  # every webhook sent: url, headers, body, status, answer
        self._tasks: set[asyncio.Task[Any]] = set()
        super().__init__()

    def envelope(self, instance: str, event: str, data: Any) -> dict[str, Any]:
        hook = self.webhook
        assert hook is not None
        slug = event.replace(".", "-").replace("_", "-").lower()
        return {
            "event": event, "instance": instance, "data": data,
            "destination": hook.url if not hook.is_global else f"{hook.url}/{slug}",
            "date_time": datetime.now(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z"),
            "sender": "5511900000001@s.whatsapp.net", "server_url": self.url,
            "apikey": self.api_key if hook.expose_token else None,
        }

    def webhook_request(self, instance: str, event: str, data: Any) -> tuple[str, dict[str, str], dict[str, Any]]:
        """(url, headers, body) of the webhook Evolution would send for this event."""
        hook = self.webhook
        assert hook is not None
        slug = event.replace(".", "-").replace("_", "-").lower()
        url = f"{hook.url}/{slug}" if hook.by_events else hook.url
        headers = {"Content-Type": "application/json", "Accept": "application/json, text/plain, */*",
                   "User-Agent": "axios/1.7.9"}
        if not hook.is_global:
            custom = dict(hook.headers)
            if "jwt_key" in custom:
                custom["Authorization"] = f"Bearer {evolution_jwt(custom.pop('jwt_key'))}"
            headers.update(custom)
            if hook.version.startswith("2.4"):
                headers.update({"X-Instance-ID": "84811dcf-3941-4304-b9a4-1f58f378feae", "X-Instance-Name": instance,
                                "X-Event-Type": event, "X-Timestamp": str(int(time.time() * 1000)),
                                "User-Agent": "EvolutionAPI-Webhook/2.3.7"})
        return url, headers, self.envelope(instance, event, data)

    async def emit(self, instance: str, event: str, data: Any) -> tuple[int, Any]:
        """Send one webhook now; returns (status, JSON answer) and records the delivery."""
        url, headers, body = self.webhook_request(instance, event, data)
        async with aiohttp.ClientSession() as http, http.post(url, data=json.dumps(body), headers=headers) as resp:
            answer = await resp.json(content_type=None)
            self.deliveries.append({"url": url, "headers": headers, "body": body,
                                    "status": resp.status, "answer": answer})
            return resp.status, answer

    async def send_text(self, instance: str, number: str, text: str) -> dict[str, Any]:
        """What another API client (Chatwoot, a CRM widget) does: POST sendText with the instance token."""
        async with aiohttp.ClientSession() as http, http.post(
            f"{self.url}/message/sendText/{instance}", json={"number": number, "text": text},
            headers={"apikey": self.api_key},
        ) as resp:
            assert resp.status == 201, await resp.text()
            answer: dict[str, Any] = await resp.json()
            return answer

    async def settle(self) -> None:
        """Wait for the webhooks sent in the background."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def stop(self) -> None:
        await self.settle()
        await super().stop()

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
        answer["messageTimestamp"] = int(time.time())
        if self.webhook is not None:
            if self.echo_first:
                await self.emit(instance, "send.message", copy.deepcopy(answer))
            else:
                task = asyncio.create_task(self.emit(instance, "send.message", copy.deepcopy(answer)))
                self._tasks.add(task)
                task.add_done_callback(self._tasks.discard)
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
