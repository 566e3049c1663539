"""`qualibot doctor --online` asks Graph (a fake, real HTTP) whether each WhatsApp Cloud number's token
reaches its phone number id: `GET /{version}/{phone_number_id}` with `Authorization: Bearer`."""

from __future__ import annotations

import asyncpg
import pytest

from tests.fakes.cloud_graph import FakeCloudGraph
from tests.fakes.cloud_webhook import CLOUD_TOKEN, NUMBER_ID, with_cloud_number
from tests.ops.conftest import Qualibot
from tests.ops.test_doctor import LLM_KEY, clean_config
from tests.seed import seed


def cloud_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "WhatsApp Cloud number" in line]


@pytest.mark.parametrize(("token", "expected"), [
    (CLOUD_TOKEN, f"OK     -         WhatsApp Cloud number {NUMBER_ID}: Graph accepted the token "
                  "(+1 555-078-3881, Smile Clinic)"),
    ("EAAJ-an-expired-token-0000", f"ERROR  -         WhatsApp Cloud number {NUMBER_ID}: token (190): "),
])
async def test_each_cloud_number_is_checked_with_its_token(
    db: asyncpg.Pool, qualibot: Qualibot, monkeypatch: pytest.MonkeyPatch, token: str, expected: str
) -> None:
    async with FakeCloudGraph(numbers={NUMBER_ID: CLOUD_TOKEN}) as graph:
        monkeypatch.setenv("META_GRAPH_URL", graph.url)
        monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
        cfg = with_cloud_number(clean_config())
        cfg["accounts"][0]["whatsapp_cloud_numbers"][0]["access_token"] = token
        await seed(db, cfg)
        run = await qualibot("doctor", "--online")
    [line] = cloud_lines(run.out)
    assert line.startswith(expected), line
    assert token not in run.out


async def test_an_unknown_phone_number_id_says_so(
    db: asyncpg.Pool, qualibot: Qualibot, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with FakeCloudGraph(numbers={}) as graph:
        monkeypatch.setenv("META_GRAPH_URL", graph.url)
        await seed(db, with_cloud_number(clean_config()))
        run = await qualibot("doctor", "--online")
    [line] = cloud_lines(run.out)
    assert "Graph knows no such phone number id, or the token cannot reach it" in line
