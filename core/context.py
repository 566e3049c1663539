"""What every request handler and job receives: the shared resources of one process.

Domain packages build their own peer clients (Evolution, Graph, CRM) from these, so `core`
stays free of domain knowledge and nothing needs a module global.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import aiohttp
import asyncpg

from core.settings import Settings

if TYPE_CHECKING:
    from openai import AsyncOpenAI


@dataclass
class AppContext:
    settings: Settings
    pool: asyncpg.Pool
    http: aiohttp.ClientSession
    llm: AsyncOpenAI | None  # None when no OPENAI_API_KEY: no replies, no LLM analysis


def make_llm(settings: Settings) -> AsyncOpenAI | None:
    if not settings.openai_api_key:
        return None
    from openai import AsyncOpenAI

    return AsyncOpenAI(
        api_key=settings.openai_api_key,
        base_url=settings.openai_base_url,
        timeout=settings.llm_timeout_seconds,
        max_retries=0,  # retries are ours (job backoff), so a dialog's failure is visible and bounded
    )
