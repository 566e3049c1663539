"""The whole WhatsApp path for end-to-end tests: the app with its workers on the test database, a
seeded tenant, and the fake Evolution, model and Meta it talks to."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import aiohttp
import asyncpg

from core.settings import Settings
from qualibot.app import create_app
from tests.fakes.evolution import FakeEvolution
from tests.fakes.evolution_webhook import client_message
from tests.fakes.graph import FakeGraph
from tests.fakes.llm import FakeLLM, Responder
from tests.helpers import running
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN, WEBHOOK_SECRET, seed, tenant_config


@dataclass
class Stack:
    url: str
    http: aiohttp.ClientSession  # sends the instance's webhook secret
    graph: FakeGraph

    async def send(self, phone: str, text: str, message_id: str, **kwargs: Any) -> None:
        """A client's message, as Evolution posts it (`tests.fakes.evolution_webhook`)."""
        async with self.http.post(f"{self.url}/webhooks/evolution",
                                  json=client_message(phone, text, message_id, **kwargs)) as resp:
            assert resp.status == 200, await resp.text()


@asynccontextmanager
async def whatsapp_stack(db: asyncpg.Pool, make_settings: Callable[..., Settings], model: Responder,
                         region: str = "RU", configure: Callable[[dict[str, Any]], None] | None = None,
                         ) -> AsyncIterator[Stack]:
    async with FakeEvolution() as evolution, FakeLLM(model) as llm, FakeGraph(
        tokens={META_TOKEN, USER_TOKEN}, datasets={PIXEL_ID}
    ) as graph:
        cfg = tenant_config(evolution_url=evolution.url)
        cfg["accounts"][0]["default_region"] = region
        if configure is not None:
            configure(cfg)
        await seed(db, cfg)
        settings = make_settings(openai_api_key="k", openai_base_url=llm.base_url, meta_graph_url=graph.url)
        async with running(create_app(settings, pool=db, with_workers=True)) as url, \
                aiohttp.ClientSession(headers={"X-Webhook-Secret": WEBHOOK_SECRET}) as http:
            yield Stack(url, http, graph)  # type: ignore[arg-type]
