"""Bitrix24 REST through an incoming-webhook URL: crm.deal.get, crm.lead.get, crm.contact.get.

`POST {rest_url}{method}.json` with a JSON body; answers are `{"result": ..., "time": ...}`,
errors `{"error", "error_description"}`: 400 "Not found" (gone), 401 NO_AUTH_FOUND / expired_token,
403 scope or plan, 503 QUERY_LIMIT_EXCEEDED (slow down), 429 OPERATION_TIME_LIMIT (method time
used up for ten minutes). The rest_url carries a secret, so errors name only its host.
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import aiohttp

from core.retries import retrying
from crm.entity import CrmRecord, FieldSet, FieldValue
from crm.errors import CrmAuthError, CrmThrottled, CrmTooManyRequests, CrmUnavailable
from crm.ratelimit import RateLimiter
from crm.transport import Answer, host_of, send

CRM = "bitrix24"
THROTTLE_TRIES = 3
THROTTLE_PAUSE = 1.0  # seconds, doubled per consecutive QUERY_LIMIT_EXCEEDED
OPERATION_LIMIT_PAUSE = 60.0  # OPERATION_TIME_LIMIT without operating_reset_at
MULTIFIELDS = {"PHONE", "EMAIL", "WEB", "IM", "LINK"}  # lists of {ID, VALUE_TYPE, VALUE, TYPE_ID}
NOT_FOUND = {"", "NOT_FOUND"}


class BitrixClient:
    """One sync's view of one portal; `max_wait` bounds its first request's rate-limit queue."""

    def __init__(self, http: aiohttp.ClientSession, rest_url: str, limiter: RateLimiter, timeout: float,
                 max_wait: float | None = None) -> None:
        self.http = http
        self.rest_url = rest_url if rest_url.endswith("/") else rest_url + "/"
        self.host = host_of(rest_url)
        self.limiter = limiter
        self.timeout = timeout
        self.max_wait = max_wait

    async def get(self, entity_type: str, entity_id: str) -> dict[str, Any] | None:
        """crm.<entity>.get: the entity, or None when Bitrix24 says it is not found."""
        result = await self.call(f"crm.{entity_type}.get", {"id": entity_id})
        return result if isinstance(result, dict) else None

    async def enum_labels(self, entity_type: str) -> dict[str, dict[str, str]]:
        """List user fields of the entity type: field name → {item id → item text}."""
        result = await self.call(f"crm.{entity_type}.userfield.list", {})
        labels: dict[str, dict[str, str]] = {}
        for uf in result if isinstance(result, list) else []:
            if isinstance(uf, dict) and uf.get("USER_TYPE_ID") == "enumeration" and uf.get("FIELD_NAME"):
                labels[str(uf["FIELD_NAME"])] = {
                    str(item.get("ID")): str(item.get("VALUE", ""))
                    for item in uf.get("LIST") or [] if isinstance(item, dict)
                }
        return labels

    async def call(self, method: str, params: dict[str, Any]) -> Any:
        answer: Answer | None = None
        error = ("", "")
        # no wait of our own between tries: the next acquire waits out the limiter's pause
        async for attempt in retrying("crm.bitrix24.call", CrmTooManyRequests, attempts=THROTTLE_TRIES,
                                      wait_initial=0.0):
            with attempt:
                # only a sync's first request may refuse a long queue; once started, it finishes
                max_wait, self.max_wait = self.max_wait, None
                answer = await send(self.http, CRM, "POST", f"{self.rest_url}{method}.json", limiter=self.limiter,
                                    timeout_seconds=self.timeout, json_body=params, max_wait=max_wait)
                error = _error(answer)
                if answer.status == 503 and error[0] == "QUERY_LIMIT_EXCEEDED":
                    pause = answer.retry_after or THROTTLE_PAUSE * 2 ** (attempt.num - 1)
                    await self.limiter.pause(pause)
                    raise CrmTooManyRequests(CRM, f"Bitrix24 at {self.host} answered QUERY_LIMIT_EXCEEDED "
                                                  f"{attempt.num} times", retry_after=pause)
        assert answer is not None
        return self._result(method, answer, error)

    def _result(self, method: str, answer: Answer, error: tuple[str, str]) -> Any:
        code, description = error
        if answer.status == 200 and not code:
            body = answer.json()
            if isinstance(body, dict) and "result" in body:
                return body["result"]
            raise CrmUnavailable(CRM, f"Bitrix24 at {self.host} answered {method} without a result")
        if answer.status in (400, 404) and (code in NOT_FOUND and "not found" in description.lower()):
            return None
        if answer.status in (401, 403):
            raise CrmAuthError(CRM, f"Bitrix24 at {self.host} refused {method}: {answer.status} {code} "
                                    f"{description}; check the webhook URL (crm_connections.rest_url) "
                                    "and its scopes")
        if answer.status == 429 or code == "OPERATION_TIME_LIMIT":
            raise CrmThrottled(CRM, f"Bitrix24 at {self.host} answered {code or answer.status}: {description}",
                               retry_after=_operating_reset(answer) or OPERATION_LIMIT_PAUSE)
        raise CrmUnavailable(CRM, f"Bitrix24 at {self.host} answered {method} with {answer.status} "
                                  f"{code} {description}".rstrip())


def _error(answer: Answer) -> tuple[str, str]:
    body = answer.json()
    if isinstance(body, dict) and "error" in body:
        return str(body.get("error") or ""), str(body.get("error_description") or "")
    return "", ""


def _operating_reset(answer: Answer) -> float | None:
    body = answer.json()
    reset = body.get("time", {}).get("operating_reset_at") if isinstance(body, dict) else None
    if isinstance(reset, int | float):
        return max(float(reset) - time.time(), 1.0)
    return None


def _scalars(raw: Any) -> list[Any]:
    """A field's values: a list field is an item id or an array of them; empty means unset."""
    if raw is None or raw == "" or isinstance(raw, dict):
        return []
    if isinstance(raw, list):
        return [v for v in raw if v is not None and v != "" and not isinstance(v, dict | list)]
    return [raw]


def field_set(entity_type: str, entity: dict[str, Any], labels: dict[str, dict[str, str]] | None = None) -> FieldSet:
    """Every field as values; a string or integer is also a candidate list item id (enum_id),
    and the item's text is attached when `labels` (from crm.<entity>.userfield.list) knows it."""
    labels = labels or {}
    fs = FieldSet(entity_type, str(entity.get("ID", "")))
    for key, raw in entity.items():
        if key in MULTIFIELDS:
            continue
        for v in _scalars(raw):
            enum_id = str(v) if isinstance(v, str | int) and not isinstance(v, bool) else None
            text = labels.get(key, {}).get(enum_id) if enum_id is not None else None
            fs.add(key, FieldValue(v, enum_id, text))
    return fs


def _multifield(entity: dict[str, Any], name: str) -> list[str]:
    """The values of a multifield, `[{ID, VALUE_TYPE, VALUE, TYPE_ID}]` (b24phpsdk 1.9.0
    src/Services/CRM/Common/Result/SystemFields/Types/Email.php, Phone.php)."""
    return [
        str(p["VALUE"]) for p in entity.get(name) or []
        if isinstance(p, dict) and p.get("VALUE") is not None and str(p["VALUE"]).strip()
    ]


def phones(entity: dict[str, Any]) -> list[str]:
    return _multifield(entity, "PHONE")


def emails(entity: dict[str, Any]) -> list[str]:
    return _multifield(entity, "EMAIL")


def _contact_id(entity: dict[str, Any]) -> str | None:
    raw = entity.get("CONTACT_ID")
    text = str(raw).strip() if raw is not None else ""
    return text if text.isdigit() and text != "0" else None


async def read_entity(
    client: BitrixClient, entity_type: str, entity_id: str, label_fields: Collection[str] = ()
) -> CrmRecord | None:
    """The entity's fields, phones and emails; a deal's phones (and fields, emails) come from its
    CONTACT_ID, a lead's from its PHONE (or its contact when it has none). None when the entity is gone.
    `label_fields`: configured fields matched by item text, which needs the user-field lists."""
    if entity_type not in ("deal", "lead", "contact"):
        raise ValueError(f"Bitrix24 entity type {entity_type!r} is not synced")
    entity = await client.get(entity_type, entity_id)
    if entity is None:
        return None
    record = CrmRecord(CRM, entity_type, entity_id, [await _fields(client, entity_type, entity, label_fields)],
                       phones(entity), emails(entity))
    contact_id = _contact_id(entity) if entity_type != "contact" else None
    if contact_id is not None and (entity_type == "deal" or not record.phones):
        contact = await client.get("contact", contact_id)
        if contact is not None:
            record.field_sets.append(await _fields(client, "contact", contact, label_fields))
            record.phones.extend(phones(contact))
            record.emails.extend(emails(contact))
    return record


async def _fields(
    client: BitrixClient, entity_type: str, entity: dict[str, Any], label_fields: Collection[str]
) -> FieldSet:
    needs_labels = any(f in entity and f.startswith("UF_") for f in label_fields)
    labels = await client.enum_labels(entity_type) if needs_labels else None
    return field_set(entity_type, entity, labels)
