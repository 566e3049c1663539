"""A fake amoCRM API v4: leads, contacts and companies with the real shapes, errors and limits.

- `GET /api/v4/leads/{id}[?with=contacts]`, `/api/v4/contacts/{id}`, `/api/v4/companies/{id}`:
  200 `application/hal+json`; `_embedded.contacts` only with `with=contacts`; 204 with an empty
  body for an id it does not know.
- `Authorization: Bearer <token>` checked: otherwise 401 `application/problem+json` (the fixture).
- More than `rate` requests in any second → 429 (every other one with a non-JSON body, as amoCRM
  does; with a Retry-After header when `retry_after` is set; a refused request does not use up
  the rate); after `block_after_429s` of them every request gets 403, like a blocked account.
- `fail_next`: statuses to answer instead of the next requests (e.g. `[500, 503]`).
- `times` holds the arrival time (monotonic) of every request; `window_max()` the most requests
  seen within any one second.
Starts with the fixtures: lead 1190401 (main contact 148775) and contact 148775.
"""

from __future__ import annotations

import copy
import json
import time
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.fakes.server import FakeServer

FIXTURES = Path(__file__).resolve().parents[1] / "crm" / "fixtures" / "amocrm"
TOKEN = "amo-long-lived-token"  # tests/seed.py's amoCRM access token
KINDS = {"leads", "contacts", "companies"}


def fixture(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


def custom_field(field_id: int, field_type: str, *values: dict[str, Any], name: str = "", code: str | None = None
                 ) -> dict[str, Any]:
    """One `custom_fields_values` entry in the v4 shape."""
    return {"field_id": field_id, "field_name": name or str(field_id), "field_code": code,
            "field_type": field_type, "values": list(values)}


def window_max(times: list[float], window: float = 1.0) -> int:
    """The most timestamps inside any half-open window of `window` seconds."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while t - ordered[start] >= window:
            start += 1
        best = max(best, end - start + 1)
    return best


class FakeAmoCRM(FakeServer):
    def __init__(self, *, token: str = TOKEN, rate: float | None = 7.0, block_after_429s: int | None = None) -> None:
        self.token = token
        self.rate = rate
        self.block_after_429s = block_after_429s
        self.retry_after: float | None = None
        self.accepted: list[float] = []
        self.leads: dict[int, dict[str, Any]] = {}
        self.contacts: dict[int, dict[str, Any]] = {}
        self.companies: dict[int, dict[str, Any]] = {}
        self.times: list[float] = []
        self.throttled = 0
        self.fail_next: list[int] = []
        super().__init__()
        lead = fixture("api-lead-with-contacts.json")
        self.leads[lead["id"]] = lead
        contact = fixture("api-contact.json")
        self.contacts[contact["id"]] = contact

    def setup(self, app: web.Application) -> None:
        app.router.add_get("/api/v4/{kind}/{id}", self._get)

    def window_max(self, window: float = 1.0) -> int:
        return window_max(self.times, window)

    def add_lead(self, lead_id: int, *, pipeline_id: int = 6254262, status_id: int = 53861254,
                 fields: list[dict[str, Any]] | None = None, contact_id: int | None = None) -> dict[str, Any]:
        lead = copy.deepcopy(self.leads.get(1190401) or fixture("api-lead-with-contacts.json"))
        lead.update(id=lead_id, pipeline_id=pipeline_id, status_id=status_id, custom_fields_values=fields)
        lead["_links"]["self"]["href"] = f"{self.url}/api/v4/leads/{lead_id}?with=contacts"
        contact_href = f"{self.url}/api/v4/contacts/{contact_id}"
        lead["_embedded"]["contacts"] = [] if contact_id is None else [
            {"id": contact_id, "is_main": True, "_links": {"self": {"href": contact_href}}}
        ]
        self.leads[lead_id] = lead
        return lead

    def add_contact(self, contact_id: int, *phones: str, fields: list[dict[str, Any]] | None = None,
                    kind: str = "contacts") -> dict[str, Any]:
        entity = copy.deepcopy(fixture("api-contact.json"))
        entity["id"] = contact_id
        phone_field = custom_field(45961, "multitext", *({"value": p, "enum_id": 45963, "enum_code": "WORK"}
                                                         for p in phones), name="Телефон", code="PHONE")
        entity["custom_fields_values"] = ([phone_field] if phones else []) + (fields or []) or None
        (self.contacts if kind == "contacts" else self.companies)[contact_id] = entity
        return entity

    def _throttle(self, now: float) -> web.Response | None:
        if self.block_after_429s is not None and self.throttled >= self.block_after_429s:
            return web.json_response({"title": "Forbidden", "type": "https://httpstatus.es/403", "status": 403,
                                      "detail": "Account is blocked"}, status=403,
                                     content_type="application/problem+json")
        if self.rate is not None and sum(1 for t in self.accepted if now - t < 1.0) + 1 > self.rate:
            self.throttled += 1
            headers = {"Retry-After": str(self.retry_after)} if self.retry_after is not None else None
            if self.throttled % 2:
                return web.Response(status=429, text="Too Many Requests", content_type="text/html", headers=headers)
            return web.json_response({"title": "Too Many Requests", "status": 429}, status=429,
                                     content_type="application/problem+json", headers=headers)
        self.accepted.append(now)
        return None

    async def _get(self, request: web.Request) -> web.Response:
        now = time.monotonic()
        self.times.append(now)
        self.requests.append({"path": request.path, "query": dict(request.query), "at": now,
                              "authorization": request.headers.get("Authorization")})
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response(fixture("api-401.json"), status=401, content_type="application/problem+json")
        throttled = self._throttle(now)
        if throttled is not None:
            return throttled
        if self.fail_next:
            status = self.fail_next.pop(0)
            return web.json_response({"title": "fake failure", "status": status}, status=status,
                                     content_type="application/problem+json")
        kind = request.match_info["kind"]
        store = {"leads": self.leads, "contacts": self.contacts, "companies": self.companies}.get(kind)
        entity_id = request.match_info["id"]
        if store is None or not entity_id.isdigit() or int(entity_id) not in store:
            return web.Response(status=204)
        entity = copy.deepcopy(store[int(entity_id)])
        if kind == "leads" and "contacts" not in request.query.get("with", "").split(","):
            entity.get("_embedded", {}).pop("contacts", None)
        return web.json_response(entity, content_type="application/hal+json")
