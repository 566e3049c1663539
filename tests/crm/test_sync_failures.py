"""A CRM that fails, refuses or throttles: the webhook was answered, the sync job retries."""

from __future__ import annotations

from typing import Any

from structlog.testing import capture_logs

from tests.crm.conftest import Launch, Stack, whatsapp_dialog
from tests.crm.support import amo_path, b24_path, body
from tests.helpers import wait_for

INTERESTED = {"field_id": "93713", "field_type": "select", "enum_id": "45997"}
LEAD = "amocrm:amo-main:lead:1190401"
DEAL_ANSWERED = {"field_id": "UF_CRM_1721244499001", "enum_id": "61", "entity_type": "deal"}


async def last_error(stack: Stack, contains: str) -> Any:
    async def probe() -> Any:
        return await stack.db.fetchrow(
            "SELECT attempts, last_error FROM jobs WHERE name = 'crm.sync' AND last_error LIKE '%' || $1 || '%'",
            contains,
        )

    return await wait_for(probe, what=f"a crm.sync job failing with {contains!r}")


async def test_wrong_token_is_a_clear_error_and_recovers_once_fixed(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    await stack.db.execute("UPDATE crm_connections SET access_token = 'expired-token' WHERE id = 'amo-main'")
    await whatsapp_dialog(stack.db)
    with capture_logs() as logs:
        status, _ = await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
        assert status == 200  # answered before the CRM is asked anything
        job = await last_error(stack, "refused the access token")
    assert "401 Invalid user name or password" in job["last_error"]  # amoCRM's own words (the fixture)
    assert "check crm_connections.access_token" in job["last_error"]
    assert "expired-token" not in job["last_error"]
    assert any(e["event"] == "crm.auth_failed" and e["log_level"] == "error" for e in logs)
    assert await stack.db.fetchval("SELECT count(*) FROM capi_events_log") == 0

    await stack.db.execute("UPDATE crm_connections SET access_token = 'amo-long-lived-token' WHERE id = 'amo-main'")
    await stack.log_rows(LEAD, count=1, status="success")


async def test_server_errors_are_retried_with_backoff(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    stack.amo.fail_next = [500, 503]
    await whatsapp_dialog(stack.db)
    status, _ = await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    assert status == 200
    await stack.log_rows(LEAD, count=1, status="success")
    assert [r["path"] for r in stack.amo.requests] == [
        "/api/v4/leads/1190401", "/api/v4/leads/1190401", "/api/v4/leads/1190401", "/api/v4/contacts/148775"]


async def test_a_429_pauses_and_the_same_run_finishes(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    stack.amo.rate = 1  # the integration's real limit is lower than configured
    await whatsapp_dialog(stack.db)
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    await stack.log_rows(LEAD, count=1, status="success")
    assert stack.amo.throttled >= 1
    assert stack.amo.window_max() <= 2  # the refused request and its retry, never more


async def test_persistent_throttling_retries_the_job_later(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    stack.amo.rate = 0  # every request refused ...
    stack.amo.retry_after = 0.05  # ... with a short Retry-After
    await whatsapp_dialog(stack.db)
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    job = await last_error(stack, "429 Too Many Requests")
    assert job["last_error"].startswith("CrmTooManyRequests")  # a CrmThrottled, retried in-process first

    async def retried() -> bool:
        return bool(await stack.db.fetchval("SELECT attempts >= 2 FROM jobs WHERE name = 'crm.sync'"))

    await wait_for(retried, what="a second attempt")
    stack.amo.rate = None
    await stack.log_rows(LEAD, count=1, status="success")


async def test_a_blocked_account_says_so(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED])
    stack.amo.block_after_429s = 0
    await stack.post(amo_path(), body("amocrm/webhook-add-lead.txt"))
    job = await last_error(stack, "forbids access")
    assert "403" in job["last_error"] and "blocked" in job["last_error"]


async def test_bitrix24_wrong_webhook_code_never_shows_the_code(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", qualified=[DEAL_ANSWERED])
    await stack.db.execute("UPDATE crm_connections SET rest_url = $1 WHERE id = 'b24-main'",
                           f"{stack.b24.url}/rest/1/wrongcode123/")
    status, _ = await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    assert status == 200
    job = await last_error(stack, "NO_AUTH_FOUND")
    assert "check the webhook URL" in job["last_error"] and "wrongcode123" not in job["last_error"]
    assert "127.0.0.1" in job["last_error"]  # the portal's host is named


async def test_bitrix24_query_limit_pauses_and_finishes(launch: Launch) -> None:
    stack: Stack = await launch(connection="b24-main", qualified=[DEAL_ANSWERED])
    stack.b24.rate = 1
    await whatsapp_dialog(stack.db)
    await stack.post(b24_path(), body("bitrix24/webhook-deal-update.txt"))
    await stack.log_rows("bitrix24:b24-main:deal:759", count=2, status="success")
    assert stack.b24.throttled >= 1
    assert stack.b24.calls.count("crm.deal.get") == 1  # the deal read itself went through


async def test_a_backlog_hands_the_worker_back_and_comes_back(launch: Launch) -> None:
    stack: Stack = await launch(interest=[INTERESTED], amo_rate=2, crm_max_queue_seconds=0.3)
    await whatsapp_dialog(stack.db)
    with capture_logs() as logs:
        status, answer = await stack.post(amo_path(), body("amocrm/webhook-update-two-leads.txt"))
        assert status == 200 and answer["syncs"] == 2
        await stack.log_rows(LEAD, count=1, status="success")
        await stack.jobs_done()
    deferred = [e for e in logs if e["event"] == "crm.read_failed" and "queued for" in e["error"]]
    assert deferred, "one of the two syncs should have found the other's requests queued"
    assert sorted({r["path"] for r in stack.amo.requests}) == [
        "/api/v4/contacts/148775", "/api/v4/leads/1190401", "/api/v4/leads/1190402"]
    assert stack.amo.throttled == 0
