"""Who sees what: login links are one-time, sessions end on revoke, and a viewer of one account gets
a 404 for every other account's id in any URL or parameter (issue 17)."""

from __future__ import annotations

import csv
import io

import aiohttp
import asyncpg
import jwt

from qualibot.dashboard import viewers
from qualibot.dashboard.routes import COOKIE, PAGES
from tests.dashboard.conftest import Site

PAGE_PATHS = [f"/dashboard/{slug}" for slug, _ in PAGES]


async def test_a_login_link_works_once_and_sets_an_httponly_cookie(site: Site) -> None:
    link = await site.link("clinic")
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as http:
        async with http.get(link, allow_redirects=False) as resp:
            assert resp.status == 303 and resp.headers["Location"] == "/dashboard/funnel"
            cookie = resp.cookies[COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Strict" and cookie["path"] == "/dashboard/"
            assert not cookie["secure"]  # plain HTTP: a Secure cookie would never come back
        async with http.get(f"{site.url}/dashboard/funnel") as resp:
            assert resp.status == 200 and "Funnel" in await resp.text()
        async with http.get(f"{site.url}/dashboard") as resp:  # -> /dashboard/ -> the first page
            assert resp.status == 200 and str(resp.url).endswith("/dashboard/funnel")
    async with aiohttp.ClientSession() as http, http.get(link) as resp:
        assert resp.status == 401
        assert (await resp.json())["error"] == "bad_login_link"
    async with aiohttp.ClientSession() as http, http.get(await site.link("clinic"), allow_redirects=False,
                                                          headers={"X-Forwarded-Proto": "https"}) as resp:
        assert resp.cookies[COOKIE]["secure"]  # behind a TLS proxy
    stored = await site.pool.fetchval("SELECT count(*) FROM dashboard_viewers WHERE login_token_hash IS NOT NULL "
                                      "AND position(convert_to($1, 'UTF8') IN login_token_hash) > 0",
                                      link.rsplit("=", 1)[1])
    assert stored == 0  # the token itself is never stored


async def test_without_a_session_or_with_a_forged_or_revoked_one_every_page_is_401(site: Site) -> None:
    forged = jwt.encode({"sub": "1", "exp": 4102444800}, b"k" * 32, algorithm="HS256")
    async with aiohttp.ClientSession() as http:
        for cookie in (None, forged, "not-a-jwt"):
            for path in [*PAGE_PATHS, "/dashboard/dialogs/1"]:
                headers = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
                async with http.get(site.url + path, headers=headers) as resp:
                    assert resp.status == 401, (path, cookie)
    http = await site.session("clinic")
    try:
        viewer_id = await site.pool.fetchval("SELECT max(id) FROM dashboard_viewers")
        async with http.get(f"{site.url}/dashboard/ads") as resp:
            assert resp.status == 200
        assert await viewers.revoke(site.pool, viewer_id)
        async with http.get(f"{site.url}/dashboard/ads") as resp:
            assert resp.status == 401
    finally:
        await http.close()


async def test_a_viewer_never_sees_another_accounts_data_by_any_url_or_parameter(site: Site) -> None:
    rival_dialog = await site.pool.fetchval("SELECT min(id) FROM dialog_analysis WHERE account_id = 'rival'")
    own_dialog = await site.pool.fetchval("SELECT min(id) FROM dialog_analysis WHERE account_id = 'clinic'")
    http = await site.session("clinic")
    try:
        for path in PAGE_PATHS:
            for query in ("account=rival", "direction=rival-a", "direction=rival-b", "account=rival&direction=rival-a"):
                async with http.get(f"{site.url}{path}?{query}") as resp:
                    assert resp.status == 404, (path, query)
                    assert (await resp.json())["error"] == "not_found"
            async with http.get(f"{site.url}{path}?days=366") as resp:
                body = await resp.text()
                assert resp.status == 200 and "rival" not in body, path
        async with http.get(f"{site.url}/dashboard/dialogs/{rival_dialog}") as resp:
            assert resp.status == 404
        async with http.get(f"{site.url}/dashboard/dialogs?ad=rival-ad-1&days=366") as resp:
            assert resp.status == 200 and "no chats in the period" in await resp.text()
        async with http.get(f"{site.url}/dashboard/dialogs/{own_dialog}") as resp:
            assert resp.status == 200
        async with http.get(f"{site.url}/dashboard/ads?format=csv&days=366") as resp:
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
            assert rows and {r["direction_id"] for r in rows} <= {"clinic-a", "clinic-b"}
    finally:
        await http.close()
    admin = await site.session(None)
    try:
        async with admin.get(f"{site.url}/dashboard/ads?account=rival&format=csv") as resp:
            rows = list(csv.DictReader(io.StringIO(await resp.text())))
            assert rows and {r["direction_id"] for r in rows} <= {"rival-a", "rival-b"}
        async with admin.get(f"{site.url}/dashboard/dialogs/{rival_dialog}") as resp:
            assert resp.status == 200
        async with admin.get(f"{site.url}/dashboard/funnel?account=nobody") as resp:
            assert resp.status == 404
    finally:
        await admin.close()


async def test_bad_parameters_are_a_400_that_says_which(site: Site) -> None:
    http = await site.session("clinic")
    try:
        for query, code in (("days=0", "bad_days"), ("days=abc", "bad_days"), ("days=367", "bad_days"),
                            ("sort=password", "bad_sort")):
            async with http.get(f"{site.url}/dashboard/ads?{query}") as resp:
                assert resp.status == 400 and (await resp.json())["error"] == code, query
        async with http.get(f"{site.url}/dashboard/dialogs/99999999999999999999999") as resp:
            assert resp.status == 404
    finally:
        await http.close()


async def test_an_unknown_account_for_a_new_viewer_is_refused(pool: asyncpg.Pool, site: Site) -> None:
    try:
        await viewers.create(pool, "no-such-account", "x")
    except viewers.NoSuchAccount:
        return
    raise AssertionError("a viewer of an unknown account was created")


async def test_held_dialogs_of_another_account_are_never_shown_or_opened(site: Site) -> None:
    held = "analysis_held_level > dialog_level(is_interested, is_qualified, is_scheduled)"
    rival = [r["id"] for r in await site.pool.fetch(
        f"SELECT id FROM dialog_analysis WHERE account_id = 'rival' AND {held}")]
    own = await site.pool.fetchval(f"SELECT count(*) FROM dialog_analysis WHERE account_id = 'clinic' AND {held}")
    assert rival and own
    http = await site.session("clinic")
    try:
        async with http.get(f"{site.url}/dashboard/held?days=366") as resp:
            body = await resp.text()
            assert resp.status == 200 and body.count('href="/dashboard/dialogs/') == own
            assert "rival" not in body and not any(f'href="/dashboard/dialogs/{i}"' in body for i in rival)
        for query in ("account=rival", "direction=rival-a", "account=rival&direction=rival-b"):
            async with http.get(f"{site.url}/dashboard/held?{query}") as resp:
                assert resp.status == 404, query
        for dialog_id in rival[:5]:
            async with http.get(f"{site.url}/dashboard/dialogs/{dialog_id}") as resp:
                assert resp.status == 404 and (await resp.json())["error"] == "not_found"
    finally:
        await http.close()
    admin = await site.session(None)
    try:
        async with admin.get(f"{site.url}/dashboard/held?account=rival&days=366") as resp:
            body = await resp.text()
            assert body.count('href="/dashboard/dialogs/') == len(rival) and "clinic-a" not in body
        async with admin.get(f"{site.url}/dashboard/dialogs/{rival[0]}") as resp:
            assert resp.status == 200 and 'id="held"' in await resp.text()
    finally:
        await admin.close()
