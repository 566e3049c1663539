"""amoCRM API v4: reading a lead (with its main contact's phones), a contact or a company.

`GET {base_url}/api/v4/leads/{id}?with=contacts`, `/api/v4/contacts/{id}`, `/api/v4/companies/{id}`
with `Authorization: Bearer <long-lived token>`. 200 is hal+json, 204 (empty) means the entity is
gone, 401/403 mean the token is wrong or the account is blocked, 429 means slow down.
"""

from __future__ import annotations

from typing import Any

import aiohttp

from core.retries import retrying
from crm.entity import CrmRecord, FieldSet, FieldValue
from crm.errors import CrmAuthError, CrmTooManyRequests, CrmUnavailable
from crm.ratelimit import RateLimiter
from crm.transport import Answer, host_of, send

CRM = "amocrm"
THROTTLE_TRIES = 3  # 429s absorbed in-process (pausing the shared limiter) before the job retries later
THROTTLE_PAUSE = 1.0  # seconds, doubled per consecutive 429, when amoCRM gives no Retry-After
PIPELINE_STATUS = "pipeline_status"  # the pseudo-field whose value is "{pipeline_id}:{status_id}"


class AmoClient:
    """One sync's view of one amoCRM account; `max_wait` bounds its first request's rate-limit queue."""

    def __init__(
        self, http: aiohttp.ClientSession, base_url: str, token: str, limiter: RateLimiter, timeout: float,
        max_wait: float | None = None,
    ) -> None:
        self.http = http
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.limiter = limiter
        self.timeout = timeout
        self.max_wait = max_wait

    async def lead(self, lead_id: str) -> dict[str, Any] | None:
        return await self.get(f"/api/v4/leads/{lead_id}", {"with": "contacts"})

    async def contact(self, contact_id: str) -> dict[str, Any] | None:
        return await self.get(f"/api/v4/contacts/{contact_id}")

    async def company(self, company_id: str) -> dict[str, Any] | None:
        return await self.get(f"/api/v4/companies/{company_id}")

    async def get(self, path: str, params: dict[str, str] | None = None) -> dict[str, Any] | None:
        """The entity at `path`, or None when amoCRM says it is gone (204)."""
        headers = {"Authorization": f"Bearer {self.token}", "Accept": "application/hal+json"}
        answer: Answer | None = None
        # no wait of our own between tries: the next acquire waits out the limiter's pause
        async for attempt in retrying("crm.amocrm.get", CrmTooManyRequests, attempts=THROTTLE_TRIES,
                                      wait_initial=0.0):
            with attempt:
                # only a sync's first request may refuse a long queue; once started, it finishes
                max_wait, self.max_wait = self.max_wait, None
                answer = await send(self.http, CRM, "GET", self.base_url + path, limiter=self.limiter,
                                    timeout_seconds=self.timeout, headers=headers, params=params, max_wait=max_wait)
                if answer.status == 429:
                    pause = answer.retry_after or THROTTLE_PAUSE * 2 ** (attempt.num - 1)
                    await self.limiter.pause(pause)
                    raise CrmTooManyRequests(CRM, f"amoCRM at {host_of(self.base_url)} answered 429 Too Many "
                                                  f"Requests {attempt.num} times", retry_after=pause)
        assert answer is not None
        return self._entity(answer)

    def _entity(self, answer: Answer) -> dict[str, Any] | None:
        host = host_of(self.base_url)
        if answer.status == 204:
            return None
        if answer.status in (401, 403):
            problem = answer.json()
            detail = (problem.get("detail") or problem.get("title")) if isinstance(problem, dict) else None
            what = "refused the access token" if answer.status == 401 else "forbids access (token or account blocked)"
            raise CrmAuthError(CRM, f"amoCRM at {host} {what}: {answer.status} {detail or ''}".rstrip()
                                    + "; check crm_connections.access_token")
        if answer.status != 200:
            raise CrmUnavailable(CRM, f"amoCRM at {host} answered {answer.status}")
        data = answer.json()
        if not isinstance(data, dict):
            raise CrmUnavailable(CRM, f"amoCRM at {host} answered 200 without a JSON object")
        return data


def field_set(entity_type: str, entity: dict[str, Any]) -> FieldSet:
    """`custom_fields_values` read faithfully: null, enum ids, checkbox bools, numeric strings, dates."""
    fs = FieldSet(entity_type, str(entity.get("id", "")))
    for cf in entity.get("custom_fields_values") or []:
        if not isinstance(cf, dict) or cf.get("field_id") is None:
            continue
        field_id = str(cf["field_id"])
        field_type = cf.get("field_type") if isinstance(cf.get("field_type"), str) else None
        for v in cf.get("values") or []:
            if isinstance(v, dict):
                value = v.get("value")
                enum_id = v.get("enum_id")
                enum_text = str(value) if enum_id is not None and value is not None else None
                fs.add(field_id, FieldValue(value, None if enum_id is None else str(enum_id), enum_text),
                       field_type)
            elif v is not None:  # a bare scalar, as old webhook bodies send dates
                fs.add(field_id, FieldValue(v), field_type)
    if entity_type == "lead" and entity.get("pipeline_id") is not None and entity.get("status_id") is not None:
        stage = f"{entity['pipeline_id']}:{entity['status_id']}"
        fs.add(PIPELINE_STATUS, FieldValue(stage, stage), "pipeline_status")
    return fs


def _multitext(entity: dict[str, Any], field_code: str) -> list[str]:
    """Every value of a system multitext field: `{"field_code": "PHONE"|"EMAIL", "values": [{"value",
    "enum_id", "enum_code": "WORK"}]}` (amocrm-api-php 1.9.0 MultitextCustomFieldValueModel,
    examples/contacts_actions.php reads the email field by fieldCode EMAIL)."""
    found: list[str] = []
    for cf in entity.get("custom_fields_values") or []:
        if isinstance(cf, dict) and cf.get("field_code") == field_code:
            for v in cf.get("values") or []:
                value = v.get("value") if isinstance(v, dict) else v
                if value is not None and str(value).strip():
                    found.append(str(value))
    return found


def phones(entity: dict[str, Any]) -> list[str]:
    return _multitext(entity, "PHONE")


def emails(entity: dict[str, Any]) -> list[str]:
    return _multitext(entity, "EMAIL")


def main_contact_id(lead: dict[str, Any]) -> str | None:
    embedded = lead.get("_embedded") or {}
    contacts = [c for c in embedded.get("contacts") or [] if isinstance(c, dict) and c.get("id")]
    main = next((c for c in contacts if c.get("is_main")), contacts[0] if contacts else None)
    return str(main["id"]) if main else None


async def read_entity(client: AmoClient, entity_type: str, entity_id: str) -> CrmRecord | None:
    """The entity's fields, phones and emails (a lead's from its main contact, with its fields);
    None when amoCRM no longer has it."""
    if entity_type == "lead":
        lead = await client.lead(entity_id)
        if lead is None:
            return None
        record = CrmRecord(CRM, "lead", entity_id, [field_set("lead", lead)], [])
        contact_id = main_contact_id(lead)
        if contact_id is not None:
            contact = await client.contact(contact_id)
            if contact is not None:
                record.field_sets.append(field_set("contact", contact))
                record.phones.extend(phones(contact))
                record.emails.extend(emails(contact))
        return record
    if entity_type in ("contact", "company"):
        entity = await (client.contact(entity_id) if entity_type == "contact" else client.company(entity_id))
        if entity is None:
            return None
        return CrmRecord(CRM, entity_type, entity_id, [field_set(entity_type, entity)], phones(entity),
                         emails(entity))
    raise ValueError(f"amoCRM has no entity type {entity_type!r}")
