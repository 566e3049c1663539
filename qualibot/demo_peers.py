"""Local stand-ins for Evolution API, an OpenAI-compatible LLM and Meta's Graph API — for
`qualibot demo` only. They listen on 127.0.0.1, label every answer as a demo, and are never
imported by the serving path. The Meta stand-in refuses what Meta refuses: a business-messaging
event named outside Meta's list (subcode 2804066).

The LLM stand-in reads the transcript the way the real model would receive it (one JSON object
per line) and applies keyword rules, so the demo shows the real evidence checks at work.
"""

from __future__ import annotations

import json
import re
import time
import uuid
from typing import Any

from aiohttp import web

from capi.errors import unlisted_event_names

DEMO_LABEL = "qualibot-demo-stand-in"
_QUALIFIED = re.compile(r"budget|бюджет", re.I)
_BOOKED = re.compile(r"\b(book|booked|confirm|записать|запишите|подтверждаю)\b|\d{1,2}:\d{2}", re.I)


def transcript_messages(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The dialog messages a chat request shows the model: every line of its messages that is a
    JSON object with a role (the analysis prompt's transcript format); anything else is skipped."""
    lines = []
    for message in body.get("messages", []):
        for line in str(message.get("content") or "").splitlines():
            if line.startswith("{") and '"role"' in line:
                try:
                    lines.append(json.loads(line))
                except json.JSONDecodeError:
                    continue
    return lines


class StandIns:
    """Three tiny servers on one aiohttp app each; `start()` returns their base URLs."""

    def __init__(self) -> None:
        self.sent_texts: list[dict[str, Any]] = []
        self.meta_events: list[dict[str, Any]] = []
        self._runners: list[web.AppRunner] = []

    async def start(self) -> dict[str, str]:
        urls = {}
        for name, app in (("evolution", self._evolution()), ("llm", self._llm()), ("meta", self._meta())):
            runner = web.AppRunner(app, access_log=None)
            await runner.setup()
            site = web.TCPSite(runner, "127.0.0.1", 0)
            await site.start()
            port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
            self._runners.append(runner)
            urls[name] = f"http://127.0.0.1:{port}"
        return urls

    async def stop(self) -> None:
        for runner in self._runners:
            await runner.cleanup()

    # Evolution API: POST /message/sendText/{instance}
    def _evolution(self) -> web.Application:
        async def send_text(request: web.Request) -> web.Response:
            body = await request.json()
            self.sent_texts.append(body)
            return web.json_response({
                "key": {"remoteJid": f"{body.get('number')}@s.whatsapp.net", "fromMe": True,
                        "id": uuid.uuid4().hex[:20].upper()},
                "message": {"conversation": body.get("text", "")}, "status": "PENDING",
                "messageTimestamp": int(time.time()), "label": DEMO_LABEL,
            }, status=201)

        app = web.Application()
        app.router.add_post("/message/sendText/{instance}", send_text)
        return app

    # OpenAI-compatible: POST /v1/chat/completions
    def _llm(self) -> web.Application:
        async def completions(request: web.Request) -> web.Response:
            body = await request.json()
            content = self._analysis(body) if body.get("response_format") else self._reply(body)
            return web.json_response({
                "id": f"chatcmpl-{DEMO_LABEL}", "object": "chat.completion", "created": int(time.time()),
                "model": body.get("model", DEMO_LABEL),
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": None,
                             "message": {"role": "assistant", "content": content, "refusal": None}}],
                "usage": {"prompt_tokens": 100, "completion_tokens": 20, "total_tokens": 120},
            })

        app = web.Application()
        app.router.add_post("/v1/chat/completions", completions)
        return app

    def _analysis(self, body: dict[str, Any]) -> str:
        client = [m for m in transcript_messages(body) if m.get("role") == "client"]
        qualified = [m["id"] for m in client if _QUALIFIED.search(m.get("text", ""))]
        booked = [m["id"] for m in client if _BOOKED.search(m.get("text", ""))]
        return json.dumps({
            "is_interested": bool(client), "is_qualified": bool(qualified), "is_scheduled": bool(booked),
            "evidence_message_ids": sorted(set(qualified + booked)),
            "reasoning": f"{DEMO_LABEL}: keyword rules over the client's messages",
        })

    def _reply(self, body: dict[str, Any]) -> str:
        last = str((body.get("messages") or [{}])[-1].get("content") or "")
        if _BOOKED.search(last):
            return "You're booked for Tuesday at 10:00. See you at Smile Clinic!"
        if _QUALIFIED.search(last):
            return "Thank you! We have free slots on Tuesday at 10:00 or Wednesday at 15:00. Which suits you?"
        return "Hello! Which tooth needs an implant, and when would you like to come?"

    # Meta Graph API: POST /{version}/{dataset}/events
    def _meta(self) -> web.Application:
        async def events(request: web.Request) -> web.Response:
            if request.content_type == "application/json":
                body = await request.json()
            else:
                form = await request.post()
                body = {"data": json.loads(str(form.get("data", "[]")))}
            data = body.get("data") or []
            refused = [e for e in data if isinstance(e, dict) and e.get("action_source") == "business_messaging"
                       and unlisted_event_names([str(e.get("event_name"))])]
            if refused:  # Meta rejects the whole request for one such event
                return web.json_response(_invalid_event_type(), status=400)
            self.meta_events.extend(data)
            return web.json_response({"events_received": len(data), "messages": [DEMO_LABEL],
                                      "fbtrace_id": f"{DEMO_LABEL}-{uuid.uuid4().hex[:8]}"})

        app = web.Application()
        app.router.add_post("/{version}/{dataset}/events", events)
        return app


def _invalid_event_type() -> dict[str, Any]:
    """Meta's answer to a business-messaging event whose name is outside its list (reference
    meta-capi.md §2, §4; the shape of Meta's Graph error envelope, subcode 2804066)."""
    return {"error": {
        "message": "Invalid parameter", "type": "OAuthException", "code": 100, "error_subcode": 2804066,
        "is_transient": False, "error_user_title": "Messaging Event Invalid Event Type",
        "error_user_msg": "The event name is not supported for business messaging events.",
        "fbtrace_id": f"{DEMO_LABEL}-{uuid.uuid4().hex[:8]}",
    }}
