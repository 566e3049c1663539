"""Fixtures of the qualification tests: a fake model, and an AppContext whose LLM talks to it."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import aiohttp
import asyncpg
import pytest
from openai import AsyncOpenAI

from core.context import AppContext
from core.settings import Settings
from tests.fakes.llm import FakeLLM
from tests.seed import seed


@pytest.fixture
async def fake_llm() -> AsyncIterator[FakeLLM]:
    fake = FakeLLM()
    await fake.start()
    yield fake
    await fake.stop()


@pytest.fixture
async def seeded(db: asyncpg.Pool) -> asyncpg.Pool:
    await seed(db)
    return db


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


@pytest.fixture
def make_ctx(
    seeded: asyncpg.Pool, http: aiohttp.ClientSession, make_settings: Callable[..., Settings],
    fake_llm: FakeLLM,
) -> Callable[..., AppContext]:
    """An AppContext on the seeded database; `llm=False` for a process without an LLM key."""

    def make(*, llm: bool = True, **overrides: Any) -> AppContext:
        settings = make_settings(**{"llm_timeout_seconds": 2.0, **overrides})
        client = AsyncOpenAI(api_key="k", base_url=fake_llm.base_url, max_retries=0) if llm else None
        return AppContext(settings=settings, pool=seeded, http=http, llm=client)

    return make
