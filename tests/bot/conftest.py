"""Fixtures for the WhatsApp side: the fakes, a seeded tenant and the running app."""

from __future__ import annotations

import copy
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg
import pytest
from aiohttp import web

from bot.drain import drain
from bot.jobs import register_jobs
from core.context import AppContext
from core.jobs import Job, JobRegistry
from core.settings import Settings
from qualibot.app import create_app
from qualification.jobs import QUALIFY_JOB
from tests.fakes.evolution import FakeEvolution
from tests.fakes.llm import FakeLLM
from tests.helpers import running
from tests.seed import WEBHOOK_SECRET, seed, tenant_config

FIXTURES = Path(__file__).parent / "fixtures" / "evolution"
CLOUD_SECRET = "cloud-webhook-secret-0123456789"
VENEERS_AD = "120239177205899999"


def load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((FIXTURES / name).read_text(encoding="utf-8"))
    return data


def text_message(phone: str, text: str, message_id: str, *, from_me: bool = False,
                 instance: str = "clinic-main") -> dict[str, Any]:
    """A 2.3.7 plain-text messages.upsert (the text fixture) for another chat, text and id."""
    body = copy.deepcopy(load("text-2.3.7.json"))
    jid = f"{phone}@s.whatsapp.net"
    body["instance"] = instance
    body["data"]["key"].update({"remoteJid": jid, "remoteJidAlt": jid, "id": message_id, "fromMe": from_me})
    body["data"]["message"] = {"conversation": text}
    if from_me:
        body["data"]["pushName"] = "Clínica Sorriso"
        body["data"]["status"] = "SERVER_ACK"
    return body


def bot_tenant(evolution_url: str) -> dict[str, Any]:
    """The standard tenant, plus a Cloud API instance and a second direction with its own ad."""
    cfg = tenant_config(evolution_url=evolution_url)
    account = cfg["accounts"][0]
    account["whatsapp_instances"].append({
        "name": "clinic-cloud", "api_url": evolution_url, "api_key": "cloud-api-key",
        "webhook_secret": CLOUD_SECRET, "default_direction": "implants",
    })
    veneers = copy.deepcopy(account["directions"][0])
    veneers.update({"id": "veneers", "name": "Veneers", "ad_ids": [VENEERS_AD],
                    "bot_prompt": "You are the veneers assistant."})
    account["directions"].append(veneers)
    return cfg


@dataclass
class Bot:
    """The running app as Evolution sees it, and what the stub qualification handler saw."""

    url: str
    http: aiohttp.ClientSession
    pool: asyncpg.Pool
    settings: Settings
    qualified: list[int] = field(default_factory=list)
    app: web.Application | None = None  # for a test that must wait on the app's own state

    async def post(self, body: Any, *, headers: dict[str, str] | None = None,
                   path: str = "/webhooks/evolution") -> tuple[int, Any]:
        hdrs = {"X-Webhook-Secret": WEBHOOK_SECRET} if headers is None else headers
        kwargs: dict[str, Any] = {"data": body} if isinstance(body, str | bytes) else {"json": body}
        async with self.http.post(self.url + path, headers=hdrs, **kwargs) as resp:
            return resp.status, await resp.json(content_type=None)

    async def drain(self) -> int:
        """Link every stored message now, as a worker's drain loop would (for apps run without workers)."""
        total = 0
        while done := await drain(self.pool, self.settings):
            total += done
        return total


@pytest.fixture
async def fake_evo() -> AsyncIterator[FakeEvolution]:
    async with FakeEvolution(instances=("clinic-main", "clinic-cloud")) as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    async with FakeLLM(lambda _req: "Olá! Como posso ajudar?") as fake:
        yield fake  # type: ignore[misc]


@pytest.fixture
async def seeded(db: asyncpg.Pool, fake_evo: FakeEvolution) -> asyncpg.Pool:
    await seed(db, bot_tenant(fake_evo.url))
    return db


StartBot = Callable[..., Any]


@pytest.fixture
def start_bot(seeded: asyncpg.Pool, make_settings: Callable[..., Settings], fake_llm: FakeLLM) -> StartBot:
    """`async with start_bot(llm=True, workers=True, **settings) as bot:` the app on a real socket.

    Only this package's jobs are registered, plus a stub for the qualification job that records
    which dialogs it was asked to qualify (the real handler belongs to the qualification package).
    """

    @asynccontextmanager
    async def start(*, llm: bool = True, workers: bool = True, **overrides: Any) -> AsyncIterator[Bot]:
        if llm:
            overrides = {"openai_api_key": "k", "openai_base_url": fake_llm.base_url, **overrides}
        qualified: list[int] = []

        async def qualify_stub(_ctx: AppContext, job: Job) -> None:
            qualified.append(int(job.payload["dialog_id"]))

        registry: JobRegistry[AppContext] = JobRegistry()
        register_jobs(registry)
        registry.register(QUALIFY_JOB, qualify_stub)
        settings = make_settings(**overrides)
        app = create_app(settings, pool=seeded, with_workers=workers, registry=registry)
        async with running(app) as url, aiohttp.ClientSession() as http:
            yield Bot(url, http, seeded, settings, qualified, app)

    return start
