"""`qualibot viewer` and `qualibot report ads | window | capture` (CLI parity with the dashboard)."""

from __future__ import annotations

import csv
import io
import json

import aiohttp

from tests.dashboard.conftest import Site, period_start
from tests.qualibot.test_config_cli import qualibot


async def test_viewer_create_prints_a_working_link_and_revoke_ends_it(site: Site, database_url: str) -> None:
    code, out, err = await qualibot(database_url, "viewer", "create", "--account", "clinic", "--name", "Agency",
                                    "--url", site.url + "/")
    assert code == 0, err
    link = out.strip().splitlines()[-1]
    assert link.startswith(f"{site.url}/dashboard/login?token=")
    viewer_id = out.split()[1]
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(link) as resp:
            assert resp.status == 200 and "Agency" in await resp.text()
        code, out, err = await qualibot(database_url, "viewer", "revoke", viewer_id)
        assert code == 0, err
        async with http.get(f"{site.url}/dashboard/funnel") as resp:
            assert resp.status == 401
    code, out, err = await qualibot(database_url, "viewer", "list")
    assert code == 0 and "Agency" in out and "clinic" in out
    code, out, err = await qualibot(database_url, "viewer", "create", "--account", "nobody")
    assert code == 2 and "--account: no account 'nobody'" in err


async def test_report_ads_window_capture_agree_with_the_tables(site: Site, database_url: str) -> None:
    since = period_start(30)
    code, out, err = await qualibot(database_url, "report", "ads", "--account", "clinic", "--format", "json")
    assert code == 0, err
    ads = json.loads(out)
    expected = await site.pool.fetch(
        """SELECT l.ad_source_id, d.direction_id, count(*) AS n, count(d.scheduled_reached_at) AS l3
           FROM dialog_analysis d JOIN leads l ON l.id = d.lead_id
           WHERE d.account_id = 'clinic' AND d.created_at >= $1 GROUP BY 1, 2""", since)
    assert {(a["ad_id"], a["direction_id"]): (a["new_chats"], a["level3"]) for a in ads} == {
        (r["ad_source_id"], r["direction_id"]): (r["n"], r["l3"]) for r in expected}

    code, out, err = await qualibot(database_url, "report", "window", "--direction", "rival-a", "--format", "csv",
                                    "--since", "2000-01-01")
    assert code == 0, err
    rows = list(csv.DictReader(io.StringIO(out)))
    clicked = await site.pool.fetchval(
        """SELECT count(*) FROM dialog_analysis d JOIN leads l ON l.id = d.lead_id
           WHERE d.direction_id = 'rival-a' AND l.referral_at IS NOT NULL""")
    assert {r["direction_id"] for r in rows} == {"rival-a"} and sum(int(r["clicked_chats"]) for r in rows) == clicked

    code, out, err = await qualibot(database_url, "report", "capture")
    assert code == 0, err
    assert "clinic-wa" in out and "rival-wa" in out and "the default last 30 days" in out
    code, out, err = await qualibot(database_url, "report", "capture", "--direction", "clinic-a")
    assert code == 2 and "--direction does not apply to `report capture`" in err


async def test_ads_and_window_leave_a_callers_connection_planning_as_before(site: Site) -> None:
    """They look each lead up by its key for their own transaction only (SET LOCAL): a connection
    handed in plans every later query with hash and merge joins and parallel workers again."""
    from qualibot import analytics
    settings = ("enable_hashjoin", "enable_mergejoin", "max_parallel_workers_per_gather")
    scope = analytics.Scope(since=period_start(30), account="clinic")
    async with site.pool.acquire() as conn:
        before = [await conn.fetchval(f"SHOW {s}") for s in settings]
        via_conn = await analytics.ads(conn, scope)
        assert via_conn == await analytics.ads(site.pool, scope) and via_conn
        assert await analytics.window(conn, scope)
        assert [await conn.fetchval(f"SHOW {s}") for s in settings] == before
        assert before[:2] == ["on", "on"] and before[2] != "0"
