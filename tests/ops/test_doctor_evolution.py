"""`qualibot doctor --online` asks Evolution (a fake, real HTTP) whether each WhatsApp instance's
api_key works and its phone is connected: `GET /instance/connectionState/{instance}` with `apikey`
(evolution-api 2.3.7 src/api/routes/instance.router.ts, instance.controller.ts connectionState)."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest

from tests.fakes.evolution import ConnectionStates, FakeEvolution, serve_connection_state
from tests.ops.conftest import Qualibot
from tests.ops.fakes import FakeMetaGraph
from tests.ops.test_doctor import LLM_KEY, clean_config, lines
from tests.seed import META_TOKEN, PIXEL_ID, seed

KEY = "instance-api-key"  # tests/seed.py's instance api_key


@pytest.fixture
async def evolution(monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[tuple[FakeEvolution, ConnectionStates]]:
    meta = FakeMetaGraph(META_TOKEN, {PIXEL_ID: "Smile Clinic WhatsApp"})
    monkeypatch.setenv("META_GRAPH_URL", await meta.start())
    monkeypatch.setenv("OPENAI_API_KEY", LLM_KEY)
    evo = FakeEvolution(api_key=KEY)
    states = serve_connection_state(evo)
    await evo.start()
    try:
        yield evo, states
    finally:
        await evo.stop()
        await meta.stop()


def at(url: str, api_key: str = KEY) -> dict[str, object]:
    cfg = clean_config()
    instance = cfg["accounts"][0]["whatsapp_instances"][0]
    instance.update(api_url=url, api_key=api_key)
    return cfg


def evolution_lines(out: str) -> list[str]:
    return [line for line in out.splitlines() if "WhatsApp instance clinic-main" in line]


async def test_a_connected_instance_is_ok_and_the_key_goes_in_the_header(
    db: asyncpg.Pool, qualibot: Qualibot, evolution: tuple[FakeEvolution, ConnectionStates]
) -> None:
    evo, states = evolution
    await seed(db, at(evo.url))
    run = await qualibot("doctor", "--online")
    assert run.code == 0, run.out
    host = evo.url.removeprefix("http://")
    assert evolution_lines(run.out) == [
        f"OK     -         WhatsApp instance clinic-main (Evolution at {host}): the phone is connected (open)"]
    assert states.requests == [{"instance": "clinic-main", "apikey": KEY}]
    assert KEY not in run.out


async def test_connecting_warns_and_close_is_an_error(
    db: asyncpg.Pool, qualibot: Qualibot, evolution: tuple[FakeEvolution, ConnectionStates]
) -> None:
    evo, states = evolution
    await seed(db, at(evo.url))
    states.states["clinic-main"] = "connecting"
    connecting = await qualibot("doctor", "--online")
    states.states["clinic-main"] = "close"
    closed = await qualibot("doctor", "--online")
    assert connecting.code == 0 and "the phone is connecting (connecting)" in lines(connecting.out, "WARN")[0]
    assert closed.code == 1
    [error] = lines(closed.out, "ERROR")
    assert "clinic-main" in error and "the phone is disconnected (close)" in error


async def test_a_wrong_key_an_unknown_instance_and_no_answer_are_errors(
    db: asyncpg.Pool, qualibot: Qualibot, evolution: tuple[FakeEvolution, ConnectionStates]
) -> None:
    evo, _ = evolution
    await seed(db, at(evo.url, api_key="a-wrong-instance-key"))
    wrong = await qualibot("doctor", "--online")
    evo.instances = {"another-instance"}
    unknown = await qualibot("doctor", "--online")
    await seed(db, at("http://127.0.0.1:9"))  # nothing listens there
    unreachable = await qualibot("doctor", "--online")
    assert wrong.code == unknown.code == unreachable.code == 1
    [error] = lines(wrong.out, "ERROR")
    assert "Evolution rejected the api_key a-wr…-key (HTTP 401)" in error, error
    assert "a-wrong-instance-key" not in wrong.out
    assert "Evolution has no instance named 'clinic-main' (HTTP 404)" in lines(unknown.out, "ERROR")[0]
    assert lines(unreachable.out, "ERROR") == [
        "ERROR  -         WhatsApp instance clinic-main (Evolution at 127.0.0.1:9): Evolution is unreachable: "
        "cannot connect to 127.0.0.1:9"]


async def test_offline_doctor_does_not_call_evolution(
    db: asyncpg.Pool, qualibot: Qualibot, evolution: tuple[FakeEvolution, ConnectionStates]
) -> None:
    evo, states = evolution
    await seed(db, at(evo.url))
    run = await qualibot("doctor")
    assert run.code == 0 and states.requests == []
