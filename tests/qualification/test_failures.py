"""A model that fails, refuses, truncates, talks nonsense or hangs: retried, then recorded."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import asyncpg
import pytest
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from core.context import AppContext
from core.jobs import JobRegistry, Retry, Worker
from qualification.analysis import ANALYSIS_ATTEMPTS
from qualification.jobs import FAILED_RUNS, qualify_dialog, register_jobs, schedule_qualification
from tests.fakes.llm import FakeLLM
from tests.helpers import wait_for
from tests.qualification.helpers import (
    dialog_row,
    job_for,
    make_dialog,
    recorded_levels,
    scheduled_citing_clients,
    transcript_lines,
    verdict,
)

Ctx = Callable[..., AppContext]
MESSAGES = [("client", "Hi"), ("bot", "When would you like to come?"), ("client", "Tuesday 10:00, booked")]

FAILURES: dict[str, tuple[Any, str, str]] = {
    # name: (fake answer, metric outcome, words in analysis_detail)
    "server error": ({"status": 500}, "error", "HTTP 500"),
    "rate limited": ({"status": 429}, "error", "HTTP 429"),
    "refusal": ({"refusal": "I can't help with that", "content": None}, "refused", "refused"),
    "invalid JSON": ("{not json", "invalid", "does not fit the schema"),
    "wrong shape": ('{"is_interested": "maybe"}', "invalid", "does not fit the schema"),
    "timeout": ({"delay": 0.6, "content": verdict()}, "timeout", "no answer within 0.2s"),
}


@pytest.fixture(autouse=True)
def quick_retries(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("qualification.analysis.RETRY_PAUSE_SECONDS", 0.01)


def _calls(outcome: str) -> float:
    labels = {"purpose": "analysis", "direction": "implants", "outcome": outcome}
    return REGISTRY.get_sample_value("qualibot_llm_calls_total", labels) or 0.0


@pytest.mark.parametrize("name", list(FAILURES))
async def test_a_failing_analysis_is_retried_then_recorded_and_the_run_retried_later(
    name: str, seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    answer, outcome, detail = FAILURES[name]
    fake_llm.responder = lambda _req: answer
    dialog_id, _ = await make_dialog(seeded, messages=MESSAGES)
    before = _calls(outcome)
    with capture_logs() as logs, pytest.raises(Retry) as retry:
        await qualify_dialog(make_ctx(llm_timeout_seconds=0.2), job_for(dialog_id))
    assert fake_llm.calls == ANALYSIS_ATTEMPTS
    assert _calls(outcome) - before == ANALYSIS_ATTEMPTS
    assert retry.value.defer >= 30
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "failed" and detail in row["analysis_detail"]
    assert f"after {ANALYSIS_ATTEMPTS} attempts" in row["analysis_detail"]
    assert row["analyzed_message_id"] is None  # the same messages are analysed on the next run
    assert await recorded_levels(seeded, dialog_id) == [1]  # level 1 does not wait for the LLM
    failed = [e for e in logs if e["event"] == "qualification.analysis_failed"]
    assert len(failed) == 1 and failed[0]["will_retry"] is True


async def test_after_the_last_run_the_failure_stays_recorded_and_a_later_success_clears_it(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda _req: {"status": 503}
    ctx = make_ctx()
    dialog_id, _ = await make_dialog(seeded, messages=MESSAGES)
    await qualify_dialog(ctx, job_for(dialog_id, attempts=FAILED_RUNS))  # no Retry: the last run
    assert (await dialog_row(seeded, dialog_id))["analysis_status"] == "failed"
    fake_llm.responder = scheduled_citing_clients
    await qualify_dialog(ctx, job_for(dialog_id))
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "ok" and await recorded_levels(seeded, dialog_id) == [1, 2, 3]


async def test_a_setup_error_is_recorded_at_once_and_not_retried(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda _req: {"status": 401, "body": {"error": {"message": "bad key"}}}
    dialog_id, _ = await make_dialog(seeded, messages=MESSAGES)
    await qualify_dialog(make_ctx(), job_for(dialog_id))
    assert fake_llm.calls == 1
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "failed" and "HTTP 401" in row["analysis_detail"]


async def test_a_truncated_answer_is_retried_with_more_room(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    def answer(request: dict[str, Any]) -> Any:
        if request["max_tokens"] < 800:
            return {"content": '{"is_inter', "finish_reason": "length"}
        return scheduled_citing_clients(request)

    fake_llm.responder = answer
    dialog_id, _ = await make_dialog(seeded, messages=MESSAGES)
    await qualify_dialog(make_ctx(), job_for(dialog_id))
    assert fake_llm.calls == 2 and await recorded_levels(seeded, dialog_id) == [1, 2, 3]


TRUNCATED = {
    # the same cut answer at every budget (temperature 0 repeats itself): one larger budget, then stop
    "identical": lambda request: {"content": '{"is_interested": true, "is_qua', "finish_reason": "length"},
    # counting ids until the token limit, as SmolLM2 and Gemma 3 270M did without maxItems (issue 19)
    "counting ids": lambda request: {"finish_reason": "length", "content": (
        '{"is_interested": true, "is_qualified": true, "is_scheduled": true, "evidence_message_ids": ['
        + ", ".join(str(n) for n in range(1, request["max_tokens"] // 2)))},
}


@pytest.mark.parametrize(("name", "calls"), [("identical", 2), ("counting ids", 1)])
async def test_a_looping_truncation_is_not_retried_with_a_doubled_budget(
    name: str, calls: int, seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = TRUNCATED[name]
    dialog_id, _ = await make_dialog(seeded, messages=MESSAGES)
    await qualify_dialog(make_ctx(), job_for(dialog_id))  # no Retry: the next run would loop the same
    assert fake_llm.calls == calls
    assert [r["json"]["max_tokens"] for r in fake_llm.requests] == [400, 800][:calls]
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "failed" and "repeated itself until the token limit" in row["analysis_detail"]
    assert await recorded_levels(seeded, dialog_id) == [1]


async def test_one_dialogs_failure_does_not_hold_up_another(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    def answer(request: dict[str, Any]) -> Any:
        if any("BROKEN" in m["text"] for m in transcript_lines(request)):
            return {"delay": 0.3, "status": 500}
        return scheduled_citing_clients(request)

    fake_llm.responder = answer
    broken, _ = await make_dialog(seeded, phone="79160000001", messages=[*MESSAGES, ("client", "BROKEN")])
    healthy, _ = await make_dialog(seeded, phone="79160000002", messages=MESSAGES)
    registry: JobRegistry[AppContext] = JobRegistry()
    register_jobs(registry)
    worker = Worker(seeded, registry, make_ctx(), concurrency=2, poll_seconds=0.02)
    await schedule_qualification(seeded, broken)
    await schedule_qualification(seeded, healthy)
    task = asyncio.create_task(worker.run())
    try:
        await wait_for(lambda: recorded_levels(seeded, healthy), what="the healthy dialog's levels")

        async def broken_failed() -> bool:
            return bool((await dialog_row(seeded, broken))["analysis_status"] == "failed")

        await wait_for(broken_failed, what="the broken dialog's failure to be recorded")
    finally:
        await worker.stop(grace=2)
        await task
    assert await recorded_levels(seeded, healthy) == [1, 2, 3]
    assert await recorded_levels(seeded, broken) == [1]
    job = await seeded.fetchrow("SELECT status, run_at > now() AS later, last_error FROM jobs WHERE key = $1",
                                f"dialog:{broken}")
    assert job["status"] == "queued" and job["later"] and "HTTP 500" in job["last_error"]
