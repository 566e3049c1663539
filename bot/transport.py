"""Where a dialog's reply goes out: Evolution's sendText, or Graph for a WhatsApp Cloud API number.

The dialog job (`bot.jobs`) asks `reply_transport` once per run; the instance decides which.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from bot.cloud.graph import GraphMessages
from bot.cloud.numbers import number_of_instance
from bot.cloud.reply import CloudReply
from bot.dialogs import ReplyState
from bot.evolution import EvolutionClient, SendResult
from core.context import AppContext


class ReplyTransport(Protocol):
    async def send(self, text: str) -> SendResult: ...


@dataclass(frozen=True)
class EvolutionReply:
    client: EvolutionClient
    instance: str
    number: str  # phone digits or the LID JID (`ReplyState.number`)

    async def send(self, text: str) -> SendResult:
        return await self.client.send_text(self.instance, self.number, text)


async def reply_transport(ctx: AppContext, state: ReplyState) -> ReplyTransport | None:
    """The dialog's way out; None when its instance is gone from the configuration."""
    if state.api_url and state.api_key:
        return EvolutionReply(EvolutionClient(ctx.http, state.api_url, state.api_key), state.instance_name,
                              state.number)
    number = await number_of_instance(ctx.pool, state.instance_name)
    if number is None:
        return None
    return CloudReply(GraphMessages(ctx.http, ctx.settings, number), ctx.pool, state.contact, state.last_client_id)
