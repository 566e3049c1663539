"""What the CRM tests share: fixture bodies, posting webhooks, counting what was written."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import asyncpg

from tests.seed import AMO_SECRET

FIXTURES = Path(__file__).parent / "fixtures"
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def body(name: str) -> bytes:
    """A webhook fixture exactly as stored (brackets plain or percent-encoded)."""
    return (FIXTURES / name).read_bytes()


def amo_path(connection: str = "amo-main", secret: str = AMO_SECRET) -> str:
    return f"/webhooks/amocrm/{connection}/{secret}"


def b24_path(connection: str = "b24-main") -> str:
    return f"/webhooks/bitrix24/{connection}"


async def post(session: aiohttp.ClientSession, url: str, data: bytes | str,
               content_type: str = "application/x-www-form-urlencoded") -> tuple[int, dict[str, object]]:
    raw = data.encode() if isinstance(data, str) else data
    async with session.post(url, data=raw, headers={"Content-Type": content_type}) as resp:
        return resp.status, await resp.json()


async def written(db: asyncpg.Pool) -> tuple[int, int]:
    """(webhook_events rows, crm.sync jobs)."""
    events = await db.fetchval("SELECT count(*) FROM webhook_events")
    jobs = await db.fetchval("SELECT count(*) FROM jobs WHERE name = 'crm.sync'")
    return int(events), int(jobs)
