"""The sender: success bookkeeping, every class of Meta answer, batches and their isolation."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import asyncpg
from structlog.testing import capture_logs

from capi.errors import BUSINESS_MESSAGING_EVENT_NAMES
from capi.outbox import Outbox
from tests.capi.conftest import log_row, make_dialog, record
from tests.fakes.graph import FakeGraph
from tests.seed import META_TOKEN, PIXEL_ID, USER_TOKEN

MakeOutbox = Callable[..., Outbox]


async def test_a_dialogs_levels_are_sent_in_one_request_and_marked_on_the_dialog(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded, phone="79161234567")
    for level in (1, 2, 3):
        await record(seeded, dialog, level)
    with capture_logs() as logs:
        stats = await outbox().run()

    assert stats.sent == 3 and stats.requests == 1
    [request] = graph.requests
    assert request["body"] == "json" and request["token_via"] == "body" and request["token"] == META_TOKEN
    assert "access_token" not in request["query"] and request["partner_agent"] == "qualibot"
    assert [e["custom_data"]["event_level"] for e in request["events"]] == [1, 2, 3]
    flags = await seeded.fetchrow("SELECT * FROM dialog_analysis WHERE id = $1", dialog)
    for level, name in ((1, "interest"), (2, "qualified"), (3, "scheduled")):
        row = await log_row(seeded, dialog, level)
        assert (row["status"], row["attempts"], row["error"]) == ("success", 1, None)
        assert row["response"]["events_received"] == 3 and row["response"]["fbtrace_id"]
        assert row["request"]["partner_agent"] == "qualibot"
        assert flags[f"capi_{name}_sent"] is True
        assert flags[f"capi_{name}_sent_at"] == row["sent_at"]
        assert flags[f"capi_{name}_event_id"] == row["event_id"]
        assert graph.delivered[row["event_id"]] == 1
    sent = [e for e in logs if e["event"] == "capi.event_sent"]
    assert sorted((e["dataset"], e["level"], e["count"]) for e in sent) == [(PIXEL_ID, n, 1) for n in (1, 2, 3)]
    assert {i for e in sent for i in e["event_ids"]} == set(graph.delivered)
    assert META_TOKEN not in str(logs) and "79161234567" not in str(logs)


async def test_the_test_event_code_and_the_fallback_token_reach_meta(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    await seeded.execute("UPDATE account_directions SET capi_test_event_code = 'TEST777'")
    await seeded.execute("UPDATE ad_accounts SET access_token = NULL")
    await record(seeded, await make_dialog(seeded), 1)
    await outbox().run()
    assert graph.requests[0]["test_event_code"] == "TEST777" and graph.requests[0]["token"] == USER_TOKEN


async def test_events_are_batched_per_request_within_the_batch_size(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    for _ in range(25):
        await record(seeded, await make_dialog(seeded), 1)
    stats = await outbox(capi_batch_size=10).run()
    assert stats.sent == 25
    assert sorted(r["count"] for r in graph.requests) == [5, 10, 10]
    assert len(graph.delivered) == 25 and not graph.duplicates()


async def test_transient_answers_are_retried_until_delivered_once(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    graph.script.extend(["throttle", "transient", "503", "timeout", "close", "malformed"])
    failures = 0
    expected = ["(code 17/2446079)", "(code 2)", "HTTP 503", "no answer from Meta within 0.3 s",
                "connection to Meta failed", "HTTP 200: the answer is not JSON"]
    with capture_logs() as logs:
        for what in expected:
            stats = await outbox(meta_timeout_seconds=0.3 if "no answer" in what else 3.0).run()
            failures += stats.retried
            row = await log_row(seeded, dialog, 1)
            assert row["status"] == "pending" and row["next_attempt_at"] > datetime.now(UTC)
            assert row["error"].startswith(f"attempt {row['attempts']} failed, will retry")
            assert what in row["error"]
            await seeded.execute("UPDATE capi_events_log SET next_attempt_at = now()")  # skip the wait
        await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert failures == 6
    assert (row["status"], row["attempts"], row["error"]) == ("success", 7, None)
    assert graph.delivered[row["event_id"]] == 1 and len(graph.requests) == 7
    assert len([e for e in logs if e["event"] == "capi.event_failed" and not e["final"]]) == 6


async def test_a_retry_waits_for_a_growing_delay(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    graph.script.extend(["transient"] * 3)
    delays = []
    for _ in range(3):
        await outbox(capi_retry_base_seconds=10, capi_retry_max_seconds=1000).run()
        row = await log_row(seeded, dialog, 1)
        delays.append((row["next_attempt_at"] - row["updated_at"]).total_seconds())
        assert await outbox().run() is not None and len(graph.requests) == len(delays)  # not due yet
        await seeded.execute("UPDATE capi_events_log SET next_attempt_at = now()")
    assert 8 < delays[0] < 12 and 17 < delays[1] < 23 and 35 < delays[2] < 45


async def test_an_invalid_token_is_a_permanent_error_with_a_hint(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    await seeded.execute("UPDATE ad_accounts SET access_token = 'EAA-revoked'")
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    with capture_logs() as logs:
        await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "error" and "Invalid OAuth access token" in row["error"] and "190" in row["error"]
    assert "access_token" in row["hint"] and row["response"]["error"]["code"] == 190
    await seeded.execute("UPDATE capi_events_log SET next_attempt_at = now()")
    await outbox().run()
    assert len(graph.requests) == 1  # never retried
    [failed] = [e for e in logs if e["event"] == "capi.event_failed"]
    assert failed["final"] is True and failed["event_ids"] == [row["event_id"]] and failed["level"] == 1
    assert failed["dataset"] == PIXEL_ID and "EAA-revoked" not in str(logs)


async def test_an_unknown_dataset_is_a_permanent_error_for_the_whole_batch(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    await seeded.execute("UPDATE account_directions SET pixel_id = '999000999'")
    dialogs = [await make_dialog(seeded) for _ in range(4)]
    for d in dialogs:
        await record(seeded, d, 1)
    await outbox().run()
    assert len(graph.requests) == 1  # a request-wide error: no isolation attempts
    for d in dialogs:
        row = await log_row(seeded, d, 1)
        assert row["status"] == "error" and "does not exist" in row["error"] and "pixel_id" in row["hint"]


async def test_event_names_meta_refuses_for_whatsapp_get_a_hint_listing_the_accepted_ones(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    await seeded.execute("UPDATE account_directions SET capi_event_names = '{}'")  # the defaults: Lead, ...
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "error" and "2804066" in row["error"]
    assert "Messaging Event Invalid Event Type" in row["error"]
    assert all(name in row["hint"] for name in BUSINESS_MESSAGING_EVENT_NAMES)
    assert "capi.event_names" in row["hint"]

    await seeded.execute("""UPDATE account_directions SET capi_event_names = '{"2": "QualifiedLead"}'""")
    await record(seeded, dialog, 2)
    await outbox().run()
    assert (await log_row(seeded, dialog, 2))["status"] == "success"


async def test_one_bad_click_id_does_not_sink_the_batch(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    graph.invalid_clids = {"bad-clid-1", "bad-clid-2"}
    dialogs = [await make_dialog(seeded, clid=f"good-{i}") for i in range(40)]
    bad = [await make_dialog(seeded, clid="bad-clid-1"), await make_dialog(seeded, clid="bad-clid-2")]
    for d in dialogs[:13] + bad[:1] + dialogs[13:] + bad[1:]:
        await record(seeded, d, 1)
    stats = await outbox(capi_concurrency=1).run()  # one lane: one batch of 42, so requests are countable

    assert (stats.sent, stats.failed) == (40, 2)
    for d in dialogs:
        assert (await log_row(seeded, d, 1))["status"] == "success"
    for d in bad:
        row = await log_row(seeded, d, 1)
        assert row["status"] == "error" and "2804087" in row["error"] and "ctwa_clid" in row["hint"]
    assert len(graph.delivered) == 40 and not graph.duplicates()
    assert graph.requests[0]["count"] == 42
    assert len(graph.requests) <= 1 + 2 * 2 * 6  # isolated by halving (≤ 2 per level per offender), not one by one


async def test_events_that_would_be_refused_are_caught_before_sending(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    old = await make_dialog(seeded)
    await record(seeded, old, 1, reached_at=datetime.now(UTC) - timedelta(days=8))
    purchase = await make_dialog(seeded)
    await seeded.execute("""UPDATE account_directions SET capi_event_names = capi_event_names || '{"3": "Purchase"}'""")
    await record(seeded, purchase, 3)
    fine = await make_dialog(seeded)
    await record(seeded, fine, 1)
    await outbox().run()

    expired = await log_row(seeded, old, 1)
    assert expired["status"] == "error" and expired["error"].startswith("expired") and "7 days" in expired["hint"]
    no_value = await log_row(seeded, purchase, 3)
    assert no_value["status"] == "error" and "capi.event_values" in no_value["hint"]
    assert (await log_row(seeded, fine, 1))["status"] == "success"
    assert [r["count"] for r in graph.requests] == [1]


async def test_a_transient_failure_close_to_seven_days_expires_instead_of_retrying(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    from capi.graph import interpret
    from capi.ledger import Claimed

    sender = outbox()
    answer = interpret(500, b'{"error": {"message": "retry later", "code": 2, "is_transient": true}}', 1)
    row = Claimed(id=1, attempts=3, event_id="e", event_level=1, event_name="Lead", dataset=PIXEL_ID,
                  event_time=datetime.now(UTC) - timedelta(days=7), event_json="{}", test_event_code=None,
                  ctwa_clid="c", action_source="business_messaging", has_value=False, token="t")
    outcome = sender._retry(row, answer)
    assert outcome.status == "error" and outcome.error and outcome.error.startswith("expired")
    assert "retry later" in outcome.error
    fresh = sender._retry(Claimed(**{**row.__dict__, "event_time": datetime.now(UTC)}), answer)
    assert fresh.status == "pending" and fresh.delay > 0


async def test_an_acknowledgement_of_fewer_events_than_sent_is_not_a_success(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialogs = [await make_dialog(seeded) for _ in range(3)]
    for d in dialogs:
        await record(seeded, d, 1)
    graph.script.append("short_ack")
    await outbox().run()
    for d in dialogs:
        row = await log_row(seeded, d, 1)
        assert row["status"] == "error" and "acknowledged 2 of 3" in row["error"] and row["response"]
    flags = await seeded.fetchval("SELECT count(*) FROM dialog_analysis WHERE capi_interest_sent")
    assert flags == 0


async def test_a_token_removed_after_recording_fails_the_row_without_a_request(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    dialog = await make_dialog(seeded)
    await record(seeded, dialog, 1)
    await seeded.execute("UPDATE ad_accounts SET access_token = NULL; UPDATE user_accounts SET access_token = NULL")
    await outbox().run()
    row = await log_row(seeded, dialog, 1)
    assert row["status"] == "error" and "no Meta access token" in row["error"] and not graph.requests


async def test_skipped_and_finished_rows_are_never_sent(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    skipped = await make_dialog(seeded, clid=None)
    await record(seeded, skipped, 1)
    await outbox().run()
    assert not graph.requests


async def test_a_throttled_token_rests_and_its_other_batches_are_not_posted_in_the_run(
    seeded: asyncpg.Pool, graph: FakeGraph, outbox: MakeOutbox
) -> None:
    # a second direction with its own dataset and the same ad account (so the same token): two batches
    await seeded.execute(
        """INSERT INTO account_directions (id, account_id, name, ad_account_id, pixel_id,
                                           whatsapp_business_account_id, capi_enabled, capi_source,
                                           capi_event_names)
           SELECT 'veneers', account_id, 'Veneers', ad_account_id, '2222222222',
                  whatsapp_business_account_id, capi_enabled, capi_source, capi_event_names
           FROM account_directions WHERE id = 'implants'""")
    if graph.datasets is not None:
        graph.datasets.add("2222222222")
    implants = await make_dialog(seeded)
    veneers = await make_dialog(seeded, direction="veneers")
    await record(seeded, implants, 1)
    await record(seeded, veneers, 1)
    graph.script.append("throttle")  # Meta throttles the first request
    with capture_logs() as logs:
        stats = await outbox(capi_concurrency=1, capi_throttle_seconds=60.0).run()
    assert len(graph.requests) == 1 and stats.requests == 1  # the other batch was not posted
    rows = {r["dialog_analysis_id"]: r for r in await seeded.fetch("SELECT * FROM capi_events_log")}
    posted, held = (rows[implants], rows[veneers]) if rows[implants]["error"] else (rows[veneers], rows[implants])
    assert posted["status"] == held["status"] == "pending"
    assert "(code 17/2446079)" in posted["error"] and posted["attempts"] == 1
    assert held["error"] is None and held["attempts"] == 0  # handed back unposted: no attempt counted
    for row in (posted, held):  # both wait for the token's rest, not the 0.05 s retry base
        assert row["next_attempt_at"] > datetime.now(UTC) + timedelta(seconds=50)
    [throttled] = [e for e in logs if e["event"] == "capi.token_throttled"]
    assert throttled["rest_seconds"] == 60.0 and META_TOKEN not in str(logs)

    await seeded.execute("UPDATE capi_events_log SET next_attempt_at = now()")  # the rest is over
    assert (await outbox().run()).sent == 2
    assert len(graph.requests) == 3 and len(graph.delivered) == 2
