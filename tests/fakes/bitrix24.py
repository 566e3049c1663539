"""A fake Bitrix24 portal's REST API behind an incoming-webhook URL.

- `/rest/{user}/{code}/{method}[.json]`, GET (query) or POST (JSON or form), answers wrapped in
  `{"result": ..., "time": {...}}` with every scalar a string, as the legacy crm.*.get methods do.
- Methods: crm.deal.get, crm.lead.get, crm.contact.get and crm.{deal,lead,contact}.userfield.list.
- A wrong user or code → 401 NO_AUTH_FOUND; an unknown id → 400 `{"error": "", "error_description":
  "Not found"}`; more than `rate` requests in any second → 503 QUERY_LIMIT_EXCEEDED.
- `fail_next`: statuses to answer instead of the next requests; `times`: arrival times; `calls`:
  the methods called, in order.
Starts with the fixtures: deal 759 (contact 84), contact 84, the deal user fields, and lead 311
(status IN_PROCESS, its own PHONE, a boolean user field sent as JSON true like crm.lead.list).
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.amocrm import window_max
from tests.fakes.server import FakeServer

FIXTURES = Path(__file__).resolve().parents[1] / "crm" / "fixtures" / "bitrix24"
CODE = "webhookcode"  # tests/seed.py's rest_url: {url}/rest/1/webhookcode/


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def default_lead() -> dict[str, Any]:
    return {
        "ID": "311", "TITLE": "Заявка из WhatsApp", "NAME": "Ирина", "STATUS_ID": "IN_PROCESS",
        "STATUS_SEMANTIC_ID": "P", "SOURCE_ID": "WEB", "OPPORTUNITY": "35000.00", "CURRENCY_ID": "RUB",
        "CONTACT_ID": None, "COMPANY_ID": None, "OPENED": "Y", "HAS_PHONE": "Y",
        "PHONE": [{"ID": "1301", "VALUE_TYPE": "MOBILE", "VALUE": "+7 916 123-45-67", "TYPE_ID": "PHONE"}],
        "DATE_CREATE": "2026-02-17T14:00:00+03:00", "DATE_MODIFY": "2026-02-17T15:03:00+03:00",
        "UF_CRM_1721300000001": True,
    }


class FakeBitrix24(FakeServer):
    def __init__(self, *, user: str = "1", code: str = CODE, rate: float | None = 2.0) -> None:
        self.user = user
        self.code = code
        self.rate = rate
        self.deals: dict[str, dict[str, Any]] = {"759": fixture("rest-crm.deal.get.json")["result"]}
        self.contacts: dict[str, dict[str, Any]] = {"84": fixture("rest-crm.contact.get.json")["result"]}
        self.leads: dict[str, dict[str, Any]] = {"311": default_lead()}
        self.userfields: dict[str, list[dict[str, Any]]] = {
            "deal": fixture("rest-crm.deal.userfield.list.json")["result"], "lead": [], "contact": [],
        }
        self.times: list[float] = []
        self.accepted: list[float] = []  # requests let through (a refused one does not use up the rate)
        self.calls: list[str] = []
        self.throttled = 0
        self.fail_next: list[int] = []
        super().__init__()

    @property
    def rest_url(self) -> str:
        return f"{self.url}/rest/{self.user}/{self.code}/"

    def setup(self, app: web.Application) -> None:
        app.router.add_route("*", "/rest/{user}/{code}/{method}", self._call)

    def window_max(self, window: float = 1.0) -> int:
        return window_max(self.times, window)

    @staticmethod
    def _answer(result: Any, **extra: Any) -> web.Response:
        now = time.time()
        timing = {"start": now, "finish": now + 0.01, "duration": 0.01, "processing": 0.005,
                  "date_start": "2026-02-17T15:02:05+03:00", "date_finish": "2026-02-17T15:02:06+03:00",
                  "operating": 0}
        return web.json_response({"result": result, **extra, "time": timing})

    async def _params(self, request: web.Request) -> dict[str, Any]:
        params: dict[str, Any] = dict(request.query)
        if request.method == "POST" and request.can_read_body:
            if request.content_type == "application/json":
                body = await request.json()
                params.update(body if isinstance(body, dict) else {})
            else:
                params.update(dict(await request.post()))
        return {k.lower(): v for k, v in params.items()}

    def _limited(self, now: float) -> web.Response | None:
        if self.rate is not None and sum(1 for t in self.accepted if now - t < 1.0) + 1 > self.rate:
            self.throttled += 1
            return web.json_response(fixture("rest-503-query-limit.json"), status=503)
        self.accepted.append(now)
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"error": "INTERNAL_SERVER_ERROR", "error_description": "fake failure"},
                                     status=status)
        return None

    async def _call(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.times.append(now)
        method = request.match_info["method"].removesuffix(".json")
        self.calls.append(method)
        params = await self._params(request)
        self.requests.append({"method": method, "params": params, "at": now})
        if request.match_info["user"] != self.user or request.match_info["code"] != self.code:
            return web.json_response(fixture("rest-401-no-auth.json"), status=401)
        limited = self._limited(now)
        if limited is not None:
            return limited
        parts = method.split(".")
        if len(parts) == 3 and parts[0] == "crm" and parts[2] == "get":
            store = {"deal": self.deals, "lead": self.leads, "contact": self.contacts}.get(parts[1])
            entity = store.get(str(params.get("id", ""))) if store is not None else None
            if entity is None:
                return web.json_response(fixture("rest-400-not-found.json"), status=400)
            return self._answer(copy.deepcopy(entity))
        if len(parts) == 4 and parts[2:] == ["userfield", "list"] and parts[1] in self.userfields:
            fields = copy.deepcopy(self.userfields[parts[1]])
            return self._answer(fields, total=len(fields))
        return web.json_response({"error": "ERROR_METHOD_NOT_FOUND", "error_description": "Method not found!"},
                                 status=404)
