"""Any OpenAI-compatible server (issue 13.4): the request adapts to what the server refuses, the
adaptation is remembered per endpoint and model, loose answers are read, and the server's own
error text reaches the log and the dialog. The fakes answer as the real servers do (tests/fakes/llm.py
REFUSALS cites each body)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
import pytest
from openai import AsyncOpenAI
from structlog.testing import capture_logs

from core.context import AppContext
from qualification.jobs import qualify_dialog
from qualification.llm import LLMSetupError, ask, capability, extract_json
from qualification.verdict import Verdict
from tests.fakes.llm import FakeLLM
from tests.qualification.helpers import dialog_row, job_for, make_dialog, recorded_levels, verdict

Ctx = Callable[..., AppContext]
MESSAGES = [{"role": "system", "content": "Judge the dialog."}, {"role": "user", "content": "Hi"}]
ANSWER = verdict(interested=True)


@pytest.fixture
async def server() -> AsyncIterator[FakeLLM]:
    fake = FakeLLM(lambda _req: ANSWER)
    await fake.start()
    yield fake
    await fake.stop()


def client(fake: FakeLLM) -> AsyncOpenAI:
    return AsyncOpenAI(api_key="sk-test-key-0123456789", base_url=fake.base_url, max_retries=0)


async def call(llm: AsyncOpenAI, structured: Any = "auto") -> Verdict:
    answer, _, _ = await ask(llm, model="m", messages=MESSAGES, schema=Verdict, max_tokens=400,
                             request_timeout=5, structured=structured)
    return answer


def formats(fake: FakeLLM) -> list[str | None]:
    return [(r["json"].get("response_format") or {}).get("type") for r in fake.requests]


@pytest.mark.parametrize(("refuses", "modes"), [
    ({"json_schema"}, ["json_schema", "json_object"]),
    ({"llamacpp_schema"}, ["json_schema", "json_object"]),
    ({"response_format"}, ["json_schema", "json_object", None]),
])
async def test_structured_output_steps_down_and_remembers(
    server: FakeLLM, refuses: set[str], modes: list[str | None]
) -> None:
    server.refuses = refuses
    llm = client(server)
    assert (await call(llm)).is_interested
    assert formats(server) == modes
    final = server.requests[-1]["json"]
    if modes[-1] != "json_schema":  # the schema travels in the system message instead
        assert '"is_scheduled"' in final["messages"][0]["content"] and "JSON" in final["messages"][0]["content"]
        assert [m["role"] for m in final["messages"]] == ["system", "user"]
    await call(llm)
    assert formats(server)[len(modes):] == [modes[-1]]  # remembered: no refused request again
    other_model = await ask(llm, model="other", messages=MESSAGES, schema=Verdict, max_tokens=400,
                            request_timeout=5)
    assert other_model[0].is_interested and formats(server)[len(modes) + 1] == "json_schema"  # per model


async def test_concurrent_calls_learn_one_step_not_one_each(server: FakeLLM) -> None:
    server.refuses = {"json_schema"}
    llm = client(server)
    answers = await asyncio.gather(*(call(llm) for _ in range(6)))
    assert all(a.is_interested for a in answers)
    assert capability(llm, "m").mode == "json_object"  # six refusals of json_schema: one step down
    assert None not in formats(server)


async def test_reasoning_model_gets_max_completion_tokens_and_its_default_temperature(server: FakeLLM) -> None:
    server.refuses = {"max_tokens", "temperature"}
    llm = client(server)
    await call(llm)
    await call(llm)
    sent = [r["json"] for r in server.requests]
    assert server.refused == 2 and len(sent) == 4
    assert sent[0]["max_tokens"] == 400 and sent[0]["temperature"] == 0
    assert "max_tokens" not in sent[2] and sent[2]["max_completion_tokens"] == 400 and "temperature" not in sent[2]
    assert sent[3] == sent[2]  # remembered


@pytest.mark.parametrize("wrap", ["fenced", "prose", "think"])
async def test_loose_answers_are_read(server: FakeLLM, wrap: str) -> None:
    server.wrap = wrap
    server.responder = lambda _req: verdict(interested=True, qualified=True, evidence=[7])
    answer = await call(client(server), "prompt")
    assert (answer.is_qualified, answer.evidence_message_ids) == (True, [7])
    assert formats(server) == [None]


def test_extract_json_finds_the_object_and_says_when_there_is_none() -> None:
    assert extract_json('Sure! {"a": {"b": [1, 2]}} hope it helps {"c": 3}') == {"a": {"b": [1, 2]}}
    assert extract_json('Result: {broken then {"ok": true}') == {"ok": True}
    with pytest.raises(ValueError, match="no JSON object"):
        extract_json("I cannot judge this dialog. [1, 2]")


async def test_a_fixed_mode_is_kept_and_its_refusal_reported_with_the_servers_words(server: FakeLLM) -> None:
    server.refuses = {"json_schema"}
    with capture_logs() as logs, pytest.raises(LLMSetupError) as failed:  # Permanent: no retry
        await call(client(server), "json_schema")
    assert formats(server) == ["json_schema"]
    assert failed.value.reason.startswith(
        "LLM endpoint answered HTTP 400: Invalid parameter: 'response_format' of type 'json_schema' is not supported")
    assert "QUALIBOT_LLM_STRUCTURED=json_schema" in failed.value.reason
    assert not [e for e in logs if e["event"] == "llm.request_adapted"]


async def test_an_error_that_no_adaptation_fixes_is_reported_at_once(server: FakeLLM) -> None:
    body = {"error": {"message": "The model `m` does not exist or you do not have access to it.",
                      "type": "invalid_request_error", "param": None, "code": "model_not_found"}}
    server.responder = lambda _req: {"status": 404, "body": body}
    with pytest.raises(LLMSetupError) as failed:  # Permanent: no retry
        await call(client(server))
    assert server.calls == 1
    assert failed.value.reason == ("LLM endpoint answered HTTP 404: The model `m` does not exist or you do not "
                                   "have access to it.")


async def test_a_dialog_on_a_server_without_response_format_is_analysed(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    """Through the qualification job: the 400 is logged with the server's words, the analysis
    goes on without response_format, and the fenced answer is read."""
    fake_llm.refuses, fake_llm.wrap = {"response_format"}, "fenced"
    dialog_id, ids = await make_dialog(seeded, messages=[("client", "Hi"), ("client", "I have all my teeth")])
    fake_llm.responder = lambda _req: verdict(interested=True, qualified=True, evidence=ids[1:])
    with capture_logs() as logs:
        await qualify_dialog(make_ctx(), job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1, 2]
    assert (await dialog_row(seeded, dialog_id))["analysis_status"] == "ok"
    adapted = [e for e in logs if e["event"] == "llm.request_adapted"]
    assert [e["change"] for e in adapted] == ["json_schema → json_object", "json_object → prompt"]
    assert "'response_format' of type 'json_object' is not supported" in adapted[-1]["server_error"]


async def test_the_servers_error_text_is_the_dialogs_analysis_error(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    body = {"error": {"message": "Incorrect API key provided: k. You can find your API key at "
                                 "https://platform.openai.com/account/api-keys.", "type": "invalid_request_error",
                      "param": None, "code": "invalid_api_key"}}
    fake_llm.responder = lambda _req: {"status": 401, "body": body}
    dialog_id, _ = await make_dialog(seeded, messages=[("client", "Hi"), ("client", "Price?")])
    with capture_logs() as logs:
        await qualify_dialog(make_ctx(), job_for(dialog_id))  # a 401 is not retried
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "failed"
    assert row["analysis_detail"].startswith("LLM endpoint answered HTTP 401: Incorrect API key provided")
    [failed] = [e for e in logs if e["event"] == "qualification.analysis_failed"]
    assert "Incorrect API key provided" in failed["reason"]


async def test_our_key_echoed_by_a_server_is_removed(server: FakeLLM) -> None:
    body = {"error": {"message": "Incorrect API key provided: sk-test-key-0123456789.", "code": "invalid_api_key"}}
    server.responder = lambda _req: {"status": 401, "body": body}
    with pytest.raises(LLMSetupError) as failed:
        await call(client(server))
    assert failed.value.reason == "LLM endpoint answered HTTP 401: Incorrect API key provided: ***."
