"""`qualibot doctor --online`: ask the CRM and Meta whether the configured tokens work.

One read-only request per distinct credential, all at once, each bounded by a short timeout:
- Meta: `GET {META_GRAPH_URL}/{META_API_VERSION}/{pixel_id}?fields=id,name`, the token in an
  `Authorization: Bearer` header (never in the URL);
- amoCRM: `GET {base_url}/api/v4/account` with `Authorization: Bearer`;
- Bitrix24: `GET {rest_url}profile` (the webhook URL carries its secret, so only its host is shown);
- Evolution: `GET {api_url}/instance/connectionState/{instance}` with the `apikey` header, per
  WhatsApp instance (`check_evolution`);
- WhatsApp Cloud API: `GET {META_GRAPH_URL}/{META_API_VERSION}/{phone_number_id}` with the number's
  token as `Authorization: Bearer`, per number (`check_cloud`).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import asyncpg

from bot.cloud.errors import describe
from bot.cloud.numbers import CloudNumber
from bot.instances import evolution_endpoints
from core.settings import Settings
from qualibot.doctor import DirectionSetup, Finding, Severity, mask

Outcome = tuple[Severity, str]


async def check_online(dirs: list[DirectionSetup], settings: Settings, request_seconds: float) -> list[Finding]:
    """Findings for every CAPI-enabled direction, in `dirs` order; each credential is asked once."""
    jobs: dict[tuple[str, ...], Awaitable[Outcome]] = {}
    wanted: list[tuple[str, tuple[str, ...]]] = []
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_seconds)) as http:
        for d in (d for d in dirs if d.capi_enabled):
            token = d.meta_token()
            if token and d.pixel_id:
                key: tuple[str, ...] = ("meta", d.pixel_id, token[1])
                if key not in jobs:
                    jobs[key] = _meta(http, settings, d.pixel_id, token[1], request_seconds)
                wanted.append((d.id, key))
            if d.source == "crm" and d.crm_connection_id:
                key = ("crm", d.crm_connection_id)
                if key not in jobs:
                    jobs[key] = _crm(http, d, request_seconds)
                wanted.append((d.id, key))
        results = dict(zip(jobs, await asyncio.gather(*jobs.values()), strict=True))
    return [Finding(results[key][0], direction, results[key][1]) for direction, key in wanted]


async def _get(http: aiohttp.ClientSession, url: str, **kw: Any) -> tuple[int, Any]:
    async with http.get(url, **kw) as resp:
        try:
            body = await resp.json(content_type=None)
        except ValueError:
            body = None
        return resp.status, body


def _why(exc: BaseException, seconds: float) -> str:
    """Why a request failed, without the URL (a Bitrix24 webhook URL is a secret)."""
    if isinstance(exc, TimeoutError):
        return f"no answer within {seconds:g} s"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"cannot connect to {exc.host}:{exc.port}"
    return type(exc).__name__


async def _meta(http: aiohttp.ClientSession, settings: Settings, pixel_id: str, token: str,
                request_seconds: float) -> Outcome:
    url = f"{settings.meta_graph_url}/{settings.meta_api_version}/{pixel_id}"
    headers = {"Authorization": f"Bearer {token}"}
    try:
        status, body = await _get(http, url, params={"fields": "id,name"}, headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "ERROR", f"Meta: could not check the token: {_why(exc, request_seconds)}"
    if status == 200 and isinstance(body, dict) and body.get("id"):
        name = f" ({body['name']!r})" if body.get("name") else ""
        return "OK", f"Meta: the token can read dataset {pixel_id}{name}"
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    message = str(error.get("message", "")).replace(token, mask(token))
    code, subcode = error.get("code"), error.get("error_subcode")
    if code == 190:
        advice = "the token is invalid or expired: put a new one in the config and apply it"
    elif code == 100 and subcode == 33:
        advice = f"dataset {pixel_id} does not exist or this token cannot access it"
    else:
        advice = "the token could not read the dataset"
    detail = f"HTTP {status}" + (f", code {code}" if code is not None else "") + (f": {message}" if message else "")
    return "ERROR", f"Meta: {advice} ({detail})"


async def _crm(http: aiohttp.ClientSession, d: DirectionSetup, request_seconds: float) -> Outcome:
    name = f"{d.crm_type} connection {d.crm_connection_id}"
    try:
        if d.crm_type == "amocrm":
            if not (d.crm_base_url and d.crm_token):
                return "ERROR", f"{name}: not checked, it has no base_url or access_token"
            url = d.crm_base_url.rstrip("/") + "/api/v4/account"
            status, body = await _get(http, url, headers={"Authorization": f"Bearer {d.crm_token}"})
            return _amocrm_outcome(name, status, body)
        if not d.crm_rest_url:
            return "ERROR", f"{name}: not checked, it has no rest_url"
        url = d.crm_rest_url.rstrip("/") + "/profile"
        status, body = await _get(http, url)
        return _bitrix_outcome(f"{name} ({urlsplit(url).hostname})", status, body)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "ERROR", f"{name}: could not check the credentials: {_why(exc, request_seconds)}"


def _amocrm_outcome(name: str, status: int, body: Any) -> Outcome:
    if status == 200 and isinstance(body, dict):
        account = body.get("name") or body.get("subdomain") or body.get("id")
        return "OK", f"{name}: amoCRM accepted the token (account {account})"
    detail = body.get("detail") or body.get("title") if isinstance(body, dict) else None
    if status == 401:
        return "ERROR", f"{name}: amoCRM rejected the token (HTTP 401{': ' + detail if detail else ''}); " \
            "issue a new long-lived token"
    return "ERROR", f"{name}: amoCRM answered HTTP {status}{': ' + str(detail) if detail else ''}"


def _bitrix_outcome(name: str, status: int, body: Any) -> Outcome:
    error = body.get("error") if isinstance(body, dict) else None
    if status == 200 and isinstance(body, dict) and "result" in body:
        return "OK", f"{name}: Bitrix24 accepted the webhook"
    if error == "insufficient_scope":
        return "OK", f"{name}: Bitrix24 accepted the webhook (its scope has no `user`, which is fine)"
    description = body.get("error_description") if isinstance(body, dict) else None
    what = ": ".join(str(x) for x in (error, description) if x) or "no error description"
    return "ERROR", f"{name}: Bitrix24 rejected the webhook (HTTP {status}, {what})"


# --- Evolution: is each WhatsApp instance's key right and its phone connected? ----------------------
# evolution-api 2.3.7 src/api/routes/instance.router.ts: GET /instance/connectionState/:instanceName
# behind instanceExistsGuard (404), then authGuard.apikey (401 unless `apikey` is the global key or
# the instance's token); src/api/controllers/instance.controller.ts connectionState answers
# {"instance": {"instanceName", "state"}} with Baileys' state: open | connecting | close.
STATE_OUTCOMES: dict[str, Outcome] = {
    "open": ("OK", "the phone is connected (open)"),
    "connecting": ("WARN", "the phone is connecting (connecting): if it stays so, scan the QR code again"),
    "close": ("ERROR", "the phone is disconnected (close): no messages arrive and no replies go out until "
                       "it is connected again (scan the QR code in Evolution)"),
}


@dataclass(frozen=True)
class EvolutionEndpoint:
    name: str
    api_url: str
    api_key: str


async def load_instances(db: asyncpg.Pool) -> list[EvolutionEndpoint]:
    return [EvolutionEndpoint(*row) for row in await evolution_endpoints(db)]


async def check_evolution(instances: list[EvolutionEndpoint], request_seconds: float) -> list[Finding]:
    """One finding per instance (deployment-wide lines naming the instance), asked all at once."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_seconds)) as http:
        outcomes = await asyncio.gather(*(_evolution(http, i, request_seconds) for i in instances))
    return [Finding(severity, None, message) for severity, message in outcomes]


async def _evolution(http: aiohttp.ClientSession, instance: EvolutionEndpoint, request_seconds: float) -> Outcome:
    where = urlsplit(instance.api_url).netloc or instance.api_url
    name = f"WhatsApp instance {instance.name} (Evolution at {where})"
    url = f"{instance.api_url.rstrip('/')}/instance/connectionState/{quote(instance.name, safe='')}"
    try:
        status, body = await _get(http, url, headers={"apikey": instance.api_key})
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "ERROR", f"{name}: Evolution is unreachable: {_why(exc, request_seconds)}"
    if status == 401:
        return "ERROR", f"{name}: Evolution rejected the api_key {mask(instance.api_key)} (HTTP 401); " \
            "set the instance's token (or the global key) as api_key and apply the config"
    if status == 404:
        return "ERROR", f"{name}: Evolution has no instance named {instance.name!r} (HTTP 404)"
    answer = body.get("instance") if isinstance(body, dict) else None
    if status != 200 or not isinstance(answer, dict):
        return "ERROR", f"{name}: Evolution answered HTTP {status} without a connection state"
    state = answer.get("state")
    severity, meaning = STATE_OUTCOMES.get(str(state), (
        "WARN", f"Evolution reports no known state ({state!r}): the instance may not be loaded; restart it"))
    return severity, f"{name}: {meaning}"


# --- WhatsApp Cloud API: does each number's token reach its phone number id? -----------------------
# Graph's WhatsApp Business Phone Number node: GET /{version}/{phone_number_id}?fields=... answers
# {"id", "display_phone_number", "verified_name", ...}; errors are Graph's (bot.cloud.errors).
async def check_cloud(numbers: list[CloudNumber], settings: Settings, request_seconds: float) -> list[Finding]:
    """One finding per Cloud number (deployment-wide lines naming the number), asked all at once."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=request_seconds)) as http:
        outcomes = await asyncio.gather(*(_cloud(http, settings, n, request_seconds) for n in numbers))
    return [Finding(severity, None, message) for severity, message in outcomes]


async def _cloud(http: aiohttp.ClientSession, settings: Settings, number: CloudNumber,
                 request_seconds: float) -> Outcome:
    name = f"WhatsApp Cloud number {number.phone_number_id}"
    url = f"{settings.meta_graph_url}/{settings.meta_api_version}/{quote(number.phone_number_id, safe='')}"
    headers = {"Authorization": f"Bearer {number.access_token}"}
    try:
        status, body = await _get(http, url, params={"fields": "id,display_phone_number,verified_name"},
                                  headers=headers)
    except (aiohttp.ClientError, TimeoutError) as exc:
        return "ERROR", f"{name}: could not check the token: {_why(exc, request_seconds)}"
    if status == 200 and isinstance(body, dict) and str(body.get("id")) == number.phone_number_id:
        shown = ", ".join(str(body[k]) for k in ("display_phone_number", "verified_name") if body.get(k))
        return "OK", f"{name}: Graph accepted the token" + (f" ({shown})" if shown else "")
    error = body.get("error") if isinstance(body, dict) else None
    error = error if isinstance(error, dict) else {}
    if error.get("code") == 100:
        return "ERROR", f"{name}: Graph knows no such phone number id, or the token cannot reach it " \
            f"(HTTP {status}); check phone_number_id and the token's WABA"
    return "ERROR", f"{name}: {describe(error, status).replace(number.access_token, mask(number.access_token))}"
