"""The WhatsApp rules: level 1 by count, LLM analysis only for new client messages, up to level 3."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import asyncpg
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from core.context import AppContext
from qualification.jobs import qualify_dialog
from tests.fakes.llm import FakeLLM
from tests.qualification.helpers import (
    Responder,
    add_messages,
    client_ids,
    dialog_row,
    job_for,
    make_dialog,
    recorded_levels,
    scheduled_citing_clients,
    transcript_lines,
    verdict,
)

Ctx = Callable[..., AppContext]


def _prompt_tokens() -> float:
    labels = {"purpose": "analysis", "direction": "implants", "kind": "prompt"}
    return REGISTRY.get_sample_value("qualibot_llm_tokens_total", labels) or 0.0


async def test_one_client_message_records_nothing_two_record_level_one(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda _req: verdict()
    ctx = make_ctx()
    dialog_id, _ = await make_dialog(seeded, messages=[("client", "Hello"), ("bot", "Hi! How can I help?")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == []
    assert fake_llm.calls == 0  # one message has answered no question yet: no analysis either
    await add_messages(seeded, dialog_id, [("client", "How much is an implant?")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1]
    assert fake_llm.calls == 1 and len(client_ids(fake_llm.requests[0]["json"])) == 2
    row = await dialog_row(seeded, dialog_id)
    assert row["is_interested"] and not row["is_qualified"]
    assert row["analysis_status"] == "ok" and row["analysis_reasoning"] == "because"


async def test_level_one_needs_no_llm(seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM) -> None:
    dialog_id, _ = await make_dialog(seeded, messages=[("client", "Hello"), ("client", "Anyone there?")])
    await qualify_dialog(make_ctx(llm=False), job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1]
    assert fake_llm.calls == 0


async def test_no_second_analysis_without_a_new_client_message(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda _req: verdict()
    ctx = make_ctx()
    dialog_id, ids = await make_dialog(seeded, messages=[("client", "Hi"), ("client", "Price?")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert fake_llm.calls == 1
    assert (await dialog_row(seeded, dialog_id))["analyzed_message_id"] == ids[-1]
    await qualify_dialog(ctx, job_for(dialog_id))  # nothing new
    await add_messages(seeded, dialog_id, [("bot", "From 30 000"), ("operator", "Hello, I am Anna")])
    await qualify_dialog(ctx, job_for(dialog_id))  # only the business spoke
    assert fake_llm.calls == 1
    await add_messages(seeded, dialog_id, [("client", "OK, and when can I come?")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert fake_llm.calls == 2
    # the second analysis saw the whole dialog, ids and roles included
    shown = [m["role"] for m in transcript_lines(fake_llm.requests[-1]["json"])]
    assert shown == ["client", "client", "bot", "operator", "client"]


async def test_analysis_raises_levels_and_stops_at_level_three(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    answers: Iterator[Responder] = iter([
        lambda req: verdict(qualified=True, evidence=client_ids(req)[-1:]),  # the answers, not "Hi"
        scheduled_citing_clients,
        lambda req: verdict(),  # a later "not scheduled" never lowers a level
    ])
    fake_llm.responder = lambda req: next(answers)(req)
    ctx = make_ctx()
    dialog_id, _ = await make_dialog(seeded, messages=[
        ("client", "Hi, implant price?"), ("bot", "Which tooth? When? Budget?"),
        ("client", "Upper molar, this month, up to 50k")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1, 2]
    await add_messages(seeded, dialog_id, [("bot", "Tuesday 10:00?"), ("client", "Yes, Tuesday 10:00, booked")])
    tokens_before = _prompt_tokens()
    with capture_logs() as logs:
        await qualify_dialog(ctx, job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1, 2, 3]
    done = next(e for e in logs if e["event"] == "qualification.analysis_complete")
    assert done["levels"] == [3] and done["level"] == 3 and done["model"] == "gpt-4o-mini"
    assert done["prompt_tokens"] > 0 and done["completion_tokens"] > 0
    assert _prompt_tokens() - tokens_before == done["prompt_tokens"]  # the per-direction metric
    assert any(e["event"] == "qualification.analysis_started" for e in logs)
    await add_messages(seeded, dialog_id, [("client", "Where do I park?"), ("client", "Thanks!")])
    await qualify_dialog(ctx, job_for(dialog_id))
    assert fake_llm.calls == 2  # level 3 reached: no more analyses
    row = await dialog_row(seeded, dialog_id)
    assert row["is_scheduled"] and row["analysis_status"] == "ok"
    # the message the model cited for level 3 is kept for the dashboard's dialog page
    booked = await seeded.fetchval("SELECT id FROM messages WHERE dialog_id = $1 AND text = $2",
                                   dialog_id, "Yes, Tuesday 10:00, booked")
    assert row["analysis_evidence"] == [booked]


async def test_only_whatsapp_sourced_directions_with_capi_on_are_qualified(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = scheduled_citing_clients
    ctx = make_ctx()
    msgs = [("client", "Hi"), ("client", "Book me for Monday 9:00")]
    await seeded.execute("UPDATE account_directions SET capi_source = 'crm'")
    crm_dialog, _ = await make_dialog(seeded, phone="79160000001", messages=msgs)
    await qualify_dialog(ctx, job_for(crm_dialog))
    await seeded.execute("UPDATE account_directions SET capi_source = 'whatsapp', capi_enabled = false")
    off_dialog, _ = await make_dialog(seeded, phone="79160000002", messages=msgs)
    await qualify_dialog(ctx, job_for(off_dialog))
    no_direction, _ = await make_dialog(seeded, phone="79160000003", direction=None, messages=msgs)
    await qualify_dialog(ctx, job_for(no_direction))
    await qualify_dialog(ctx, job_for(no_direction + 100))  # a dialog deleted meanwhile
    for dialog_id in (crm_dialog, off_dialog):
        assert await recorded_levels(seeded, dialog_id) == []
    # no direction is no silent loss (issue 12.8): level 1 is a skipped row that names the instance
    assert await recorded_levels(seeded, no_direction) == [1]
    row = await seeded.fetchrow("SELECT status, error FROM capi_events_log WHERE dialog_analysis_id = $1",
                                no_direction)
    assert row["status"] == "skipped" and "'clinic-main' has no default_direction" in row["error"]
    assert fake_llm.calls == 0


async def test_without_criteria_level_one_works_and_the_rest_is_not_analysed(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = scheduled_citing_clients
    await seeded.execute("UPDATE account_directions SET qualification_prompt = NULL")
    dialog_id, _ = await make_dialog(seeded, messages=[("client", "Hi"), ("client", "Book me Monday 9:00")])
    with capture_logs() as logs:
        await qualify_dialog(make_ctx(), job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1]
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "not_analysed"
    assert "no qualification_prompt" in row["analysis_detail"] and row["analyzed_message_id"] is None
    assert [e["reason"] for e in logs if e["event"] == "qualification.not_analysed"] == [row["analysis_detail"]]
    assert fake_llm.calls == 0


async def test_without_an_llm_key_level_one_works_and_the_rest_is_not_analysed(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    dialog_id, _ = await make_dialog(seeded, messages=[("client", "Hi"), ("client", "Book me Monday 9:00")])
    await qualify_dialog(make_ctx(llm=False), job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1]
    row = await dialog_row(seeded, dialog_id)
    assert row["analysis_status"] == "not_analysed" and "OPENAI_API_KEY" in row["analysis_detail"]
    # once a key is configured, the same messages are analysed (the watermark did not move)
    fake_llm.responder = scheduled_citing_clients
    await qualify_dialog(make_ctx(), job_for(dialog_id))
    assert await recorded_levels(seeded, dialog_id) == [1, 2, 3]
    assert (await dialog_row(seeded, dialog_id))["analysis_status"] == "ok"


async def test_the_window_is_bounded_to_the_newest_messages(
    seeded: asyncpg.Pool, make_ctx: Ctx, fake_llm: FakeLLM
) -> None:
    fake_llm.responder = lambda _req: verdict()
    dialog_id, ids = await make_dialog(seeded, messages=[("client", f"message {i}") for i in range(55)])
    await qualify_dialog(make_ctx(), job_for(dialog_id))
    shown = [m["id"] for m in transcript_lines(fake_llm.requests[-1]["json"])]
    assert shown == ids[-40:]
    assert "15 earlier messages" in fake_llm.requests[-1]["json"]["messages"][-1]["content"]
    assert fake_llm.requests[-1]["json"]["response_format"]["type"] == "json_schema"
