"""A Cloud number's reply: through Graph, and only inside WhatsApp's customer-service window.

A business may answer freely for 24 hours after the person's last message; later only a template
goes through (Graph would refuse with 131047). The dialog job normally replies seconds after the
burst, so the window matters after a long outage or backlog: the reply is then recorded as not
sent, with why, and Graph is not asked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import asyncpg

from bot.cloud.graph import GraphMessages
from bot.evolution import SendResult
from qualification.dialogs import client_message_time

WINDOW = timedelta(hours=24)


@dataclass(frozen=True)
class CloudReply:
    graph: GraphMessages
    pool: asyncpg.Pool
    to: str  # the person's wa_id (or user id)
    last_client_id: int | None  # messages.id of the message the reply answers

    async def send(self, text: str) -> SendResult:
        wrote = await client_message_time(self.pool, self.last_client_id) if self.last_client_id else None
        if wrote is None or datetime.now(UTC) - wrote > WINDOW:
            when = f"the person last wrote {wrote:%Y-%m-%d %H:%M} UTC" if wrote else "no message from the person"
            why = f"not sent: outside WhatsApp's 24-hour customer-service window ({when})"
            return SendResult(False, None, error=why)
        return await self.graph.send_text(self.to, text)
