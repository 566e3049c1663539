"""Replies through Graph: `POST {META_GRAPH_URL}/{META_API_VERSION}/{phone_number_id}/messages`.

The body is Meta's text message (`messaging_product: whatsapp`, `recipient_type: individual`,
`to`, `type: text`, `text.body`; Cloud API "Send messages", developers.facebook.com/documentation/
business-messaging/whatsapp/messages/text-messages); the number's token goes in the
`Authorization` header, never the URL. Meta answers `{"messages": [{"id": "wamid…"}]}`: that id
is what `statuses[]` later name. A send is never retried (after a timeout it may have gone out);
every failure is returned as a `SendResult` whose error is classified (`bot.cloud.errors`).
"""

from __future__ import annotations

from urllib.parse import quote

import aiohttp

from bot.cloud.errors import describe
from bot.cloud.numbers import CloudNumber
from bot.evolution import SendResult
from bot.peer_http import post_json
from bot.values import as_text
from core.secrets import redact
from core.settings import Settings


class GraphMessages:
    def __init__(self, http: aiohttp.ClientSession, settings: Settings, number: CloudNumber) -> None:
        self.http = http
        self.url = (f"{settings.meta_graph_url.rstrip('/')}/{settings.meta_api_version}/"
                    f"{quote(number.phone_number_id, safe='')}/messages")
        self.token = number.access_token
        self.timeout = aiohttp.ClientTimeout(total=settings.meta_timeout_seconds)

    async def send_text(self, to: str, text: str) -> SendResult:
        body = {"messaging_product": "whatsapp", "recipient_type": "individual", "to": to, "type": "text",
                "text": {"preview_url": False, "body": text}}
        answer = await post_json(self.http, self.url, body, {"Authorization": f"Bearer {self.token}"}, self.timeout)
        if answer.timed_out:
            return SendResult(False, None, error="transient: no answer from Graph, delivery unknown")
        if answer.status is None:
            return SendResult(False, None, error=f"transient: connection to Graph failed: {answer.failure}")
        if 200 <= answer.status < 300 and isinstance(answer.body, dict):
            sent = answer.body.get("messages")
            first = sent[0] if isinstance(sent, list) and sent else None
            wamid = as_text(first.get("id")) if isinstance(first, dict) else None
            if wamid:
                return SendResult(True, answer.status, external_id=wamid)
        error = answer.body.get("error") if isinstance(answer.body, dict) else None
        return SendResult(False, answer.status, error=redact(describe(error, answer.status))[:500])
