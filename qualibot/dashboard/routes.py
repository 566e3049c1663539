"""The read-only dashboard at /dashboard/: server-rendered pages (aiohttp-jinja2), one sub-application.

Every page resolves its scope first (`_scope`): a viewer of one account sees that account only, and
an `account` or `direction` parameter outside it is a 404, as is a dialog of another account. The
period is the last `days` days (30 by default, at most 366), said on every page. Tables sort on the
server (`sort`, `order` links), so they work without JavaScript; charts are inline SVG.
"""

from __future__ import annotations

import csv
import io
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from capi import tenants
from capi.ledger import events_of_dialog
from core.logging import mask_phone
from core.web import CTX, ApiError, is_digits
from qualibot import analytics, reports
from qualibot.cmd_report import text
from qualibot.dashboard import charts, viewers
from qualification.dialogs import dialog_audit, transcript_page
from qualification.leads import lead_ad

COOKIE = "qualibot_dashboard"
DEFAULT_DAYS = 30
MAX_DAYS = 366
TRANSCRIPT_MESSAGES = 200
ERRORS_SHOWN = 100
_KEPT = ("account", "direction", "days", "sort", "order", "ad")
# the pages load nothing but their stylesheet and are never framed or cached
_HEADERS = {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Referrer-Policy": "same-origin",
            "Content-Security-Policy": "default-src 'none'; style-src 'self'; frame-ancestors 'none'"}
DIALOGS_SHOWN = 200
PAGES = (("funnel", "Funnel"), ("ads", "Ads"), ("readiness", "Readiness"), ("window", "Attribution window"),
         ("capture", "Capture"), ("errors", "Errors"), ("dialogs", "Dialogs"), ("held", "Held for review"))
HELD_SHOWN = 500


@dataclass(frozen=True)
class Scope:
    viewer: viewers.Viewer
    account: str | None  # None: every account (an admin who chose none)
    directions: list[tuple[str, str, str]]  # (id, name, account) the viewer may pick from
    direction: str | None
    days: int

    @property
    def since(self) -> datetime:
        today = datetime.now(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
        return today - timedelta(days=self.days - 1)

    @property
    def since_day(self) -> date:
        return self.since.date()

    @property
    def direction_filter(self) -> tuple[str, ...] | None:
        """The directions a query may read; None: all, the decisions without a direction too."""
        if self.direction is not None:
            return (self.direction,)
        if self.account is None:
            return None
        return tuple(d[0] for d in self.directions)

    @property
    def analytics(self) -> analytics.Scope:
        return analytics.Scope(since=self.since, account=self.account, direction=self.direction)


def _not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", what)


async def _viewer(request: web.Request) -> viewers.Viewer:
    cookie = request.cookies.get(COOKIE)
    viewer = await viewers.from_session(request.config_dict[CTX].pool, cookie) if cookie else None
    if viewer is None:
        raise ApiError(401, "unauthorized",
                       "no dashboard session: open the login link from `qualibot viewer create`")
    return viewer


async def _scope(request: web.Request) -> Scope:
    viewer = await _viewer(request)
    pool = request.config_dict[CTX].pool
    query = request.query
    account = query.get("account") or None
    if viewer.account_id is not None:
        if account is not None and account != viewer.account_id:
            raise _not_found(f"no account {account!r}")
        account = viewer.account_id
    elif account is not None and account not in {a for a, _ in await tenants.account_list(pool)}:
        raise _not_found(f"no account {account!r}")
    directions = await tenants.directions_of(pool, account)
    direction = query.get("direction") or None
    if direction is not None and direction not in {d[0] for d in directions}:
        raise _not_found(f"no direction {direction!r}")
    days_text = query.get("days", str(DEFAULT_DAYS))
    if not is_digits(days_text) or not 1 <= int(days_text) <= MAX_DAYS:
        raise ApiError(400, "bad_days", f"days: a whole number from 1 to {MAX_DAYS}, not {days_text[:20]!r}")
    return Scope(viewer, account, directions, direction, int(days_text))


def _sorted(rows: list[dict[str, Any]], request: web.Request, columns: tuple[str, ...]) -> list[dict[str, Any]]:
    column = request.query.get("sort")
    if column is None:
        return rows
    if column not in columns:
        raise ApiError(400, "bad_sort", f"sort: one of {', '.join(columns)}")
    descending = request.query.get("order", "asc") == "desc"
    present = [r for r in rows if r[column] is not None]
    present.sort(key=lambda r: r[column], reverse=descending)
    return present + [r for r in rows if r[column] is None]  # no value: last either way


def _query(request: web.Request, **changes: str | None) -> str:
    """This page's query string with `changes` (None drops a parameter): links keep the period and filters."""
    params: dict[str, str | None] = {k: v for k, v in request.query.items() if k in _KEPT}
    params.update(changes)
    kept = {k: v for k, v in params.items() if v is not None}
    return "?" + urlencode(kept) if kept else ""


def _render(request: web.Request, template: str, scope: Scope, **context: Any) -> web.Response:
    context.update(scope=scope, pages=PAGES, page=template.removesuffix(".html"),
                   accounts=context.get("accounts", []), query=lambda **c: _query(request, **c),
                   current=request.query)
    response = aiohttp_jinja2.render_template(template, request, context)
    response.headers.update(_HEADERS)
    return response


def _csv(name: str, columns: tuple[str, ...], rows: list[dict[str, Any]]) -> web.Response:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    writer.writerows([text(r[c]) for c in columns] for r in rows)
    return web.Response(text=out.getvalue(), content_type="text/csv", charset="utf-8",
                        headers={"Content-Disposition": f'attachment; filename="{name}.csv"'})


async def _accounts(request: web.Request, scope: Scope) -> list[tuple[str, str]]:
    if not scope.viewer.is_admin:
        return []
    return await tenants.account_list(request.config_dict[CTX].pool)


def _https(request: web.Request) -> bool:
    """Behind a TLS proxy the request arrives as plain HTTP; its X-Forwarded-Proto can only make the
    cookie stricter (Secure), so trusting it here costs nothing."""
    return request.secure or request.headers.get("X-Forwarded-Proto", "").lower() == "https"


async def login(request: web.Request) -> web.Response:
    token = request.query.get("token", "")
    cookie = await viewers.redeem(request.config_dict[CTX].pool, token) if 0 < len(token) <= 100 else None
    if cookie is None:
        raise ApiError(401, "bad_login_link", "this login link is unknown, used or expired: ask for a new one")
    response = web.HTTPSeeOther("/dashboard/funnel")
    response.set_cookie(COOKIE, cookie, max_age=int(viewers.SESSION_VALID.total_seconds()), path="/dashboard/",
                        httponly=True, samesite="Strict", secure=_https(request))
    raise response


async def index(request: web.Request) -> web.Response:
    await _viewer(request)
    raise web.HTTPSeeOther("/dashboard/funnel")


async def funnel(request: web.Request) -> web.Response:
    scope = await _scope(request)
    pool = request.config_dict[CTX].pool
    rows = await reports.funnel_days(pool, scope.since_day, scope.direction_filter)
    return _render(request, "funnel.html", scope, days=charts.per_day(rows), conversion=charts.conversion(rows),
                   chart=charts.daily_levels(rows, scope.since_day, scope.days),
                   accounts=await _accounts(request, scope))


async def ads(request: web.Request) -> web.Response:
    scope = await _scope(request)
    rows = _sorted(await analytics.ads(request.config_dict[CTX].pool, scope.analytics), request,
                   analytics.ADS_COLUMNS)
    if request.query.get("format") == "csv":
        return _csv("ads", analytics.ADS_COLUMNS, rows)
    return _render(request, "ads.html", scope, rows=rows, columns=analytics.ADS_COLUMNS, no_ad=analytics.NO_AD,
                   accounts=await _accounts(request, scope))


async def readiness(request: web.Request) -> web.Response:
    scope = await _scope(request)
    rows = await reports.fetch(request.config_dict[CTX].pool, reports.READINESS,
                               reports.Filters(directions=scope.direction_filter))
    return _render(request, "readiness.html", scope, rows=rows, accounts=await _accounts(request, scope))


async def window(request: web.Request) -> web.Response:
    scope = await _scope(request)
    rows = _sorted(await analytics.window(request.config_dict[CTX].pool, scope.analytics), request,
                   analytics.WINDOW_COLUMNS)
    return _render(request, "window.html", scope, rows=rows, columns=analytics.WINDOW_COLUMNS,
                   days_limit=analytics.ATTRIBUTION_DAYS, accounts=await _accounts(request, scope))


async def capture(request: web.Request) -> web.Response:
    scope = await _scope(request)
    rows = await analytics.capture(request.config_dict[CTX].pool, scope.analytics)
    return _render(request, "capture.html", scope, rows=rows, chart=charts.capture_share(rows),
                   accounts=await _accounts(request, scope))


async def errors(request: web.Request) -> web.Response:
    scope = await _scope(request)
    rows = await reports.fetch(request.config_dict[CTX].pool, reports.ERRORS_AUDIT, reports.Filters(
        directions=scope.direction_filter, since=scope.since_day, limit=ERRORS_SHOWN))
    return _render(request, "errors.html", scope, rows=rows, limit=ERRORS_SHOWN,
                   accounts=await _accounts(request, scope))


async def dialogs(request: web.Request) -> web.Response:
    scope = await _scope(request)
    ad = request.query.get("ad") or None
    if ad is not None and len(ad) > 200:
        raise ApiError(400, "bad_ad", "ad: an ad id of at most 200 characters")
    rows = await analytics.dialogs(request.config_dict[CTX].pool, scope.analytics, ad, DIALOGS_SHOWN)
    return _render(request, "dialogs.html", scope, rows=rows, ad=ad, no_ad=analytics.NO_AD, limit=DIALOGS_SHOWN,
                   accounts=await _accounts(request, scope))


async def held(request: web.Request) -> web.Response:
    scope = await _scope(request)
    pool = request.config_dict[CTX].pool
    rows = await reports.held_for_review(pool, scope.since, scope.account, scope.direction, HELD_SHOWN)
    by_direction: dict[str | None, list[dict[str, Any]]] = {}
    for row in rows:
        by_direction.setdefault(row["direction_id"], []).append(row)
    thresholds = {}
    for direction in by_direction:
        setup = await tenants.qualification_setup(pool, direction) if direction is not None else None
        thresholds[direction] = setup.min_confidence if setup is not None else None
    return _render(request, "held.html", scope, by_direction=sorted(by_direction.items(), key=lambda d: d[0] or ""),
                   thresholds=thresholds, shown=len(rows), limit=HELD_SHOWN, accounts=await _accounts(request, scope))


async def dialog(request: web.Request) -> web.Response:
    viewer = await _viewer(request)
    pool = request.config_dict[CTX].pool
    raw = request.match_info["dialog_id"]
    found = await dialog_audit(pool, int(raw)) if is_digits(raw) and len(raw) <= 18 else None
    if found is None or (viewer.account_id is not None and found["account_id"] != viewer.account_id):
        raise _not_found(f"no dialog {raw[:20]!r}")
    scope = Scope(viewer, found["account_id"], [], None, DEFAULT_DAYS)
    messages = await transcript_page(pool, found["id"], TRANSCRIPT_MESSAGES)
    evidence = set(found["analysis_evidence"] or [])
    return _render(request, "dialog.html", scope, dialog=found, phone=mask_phone(found["contact_phone"]),
                   messages=messages, evidence=evidence,
                   ad=await lead_ad(pool, found["lead_id"]) if found["lead_id"] is not None else None,
                   setup=await tenants.qualification_setup(pool, found["direction_id"])
                   if found["direction_id"] is not None else None,
                   events=await events_of_dialog(pool, found["id"]))


def add_routes(app: web.Application) -> None:
    dashboard = web.Application()
    env = aiohttp_jinja2.setup(dashboard, loader=jinja2.PackageLoader("qualibot.dashboard", "templates"),
                               autoescape=jinja2.select_autoescape(default=True))
    env.filters["duration"] = charts.duration
    env.filters["cell"] = text
    env.filters["mask_phone"] = mask_phone
    dashboard.router.add_get("/", index)
    dashboard.router.add_get("/login", login)
    for handler in (funnel, ads, readiness, window, capture, errors, dialogs, held):
        dashboard.router.add_get(f"/{handler.__name__}", handler)
    dashboard.router.add_get("/dialogs/{dialog_id}", dialog)
    dashboard.router.add_static("/static/", charts.STATIC)
    app.router.add_get("/dashboard", _to_index)  # before the sub-application, whose prefix would take it
    app.add_subapp("/dashboard/", dashboard)


async def _to_index(request: web.Request) -> web.Response:
    raise web.HTTPMovedPermanently("/dashboard/")
