"""Meta's side of the Cloud webhook for tests: the documented bodies (tests/bot/fixtures/cloud/),
reshaped for a test's chat, signed as Meta signs them, and a tenant with a Cloud number."""

from __future__ import annotations

import copy
import json
import time
from typing import Any

import aiohttp

from bot.cloud.signature import HEADER, sign
from tests.fakes.cloud_graph import cloud_fixture

NUMBER_ID = "106540352242922"  # Meta's example phone number id
WABA = "102290129340398"  # Meta's example WABA
CLOUD_TOKEN = "EAAJ-cloud-system-user-token"
APP_SECRET = "cloud-app-secret-0123456789abcdef"
VERIFY_TOKEN = "cloud-verify-token-0123456789"
PATH = "/webhooks/whatsapp-cloud"


def with_cloud_number(cfg: dict[str, Any], *, number_id: str = NUMBER_ID, waba: str = WABA,
                      direction: str | None = "implants") -> dict[str, Any]:
    """The tenant config with a Cloud number added to its first account."""
    cfg = copy.deepcopy(cfg)
    cfg["accounts"][0].setdefault("whatsapp_cloud_numbers", []).append({
        "phone_number_id": number_id, "waba_id": waba, "access_token": CLOUD_TOKEN,
        "app_secret": APP_SECRET, "verify_token": VERIFY_TOKEN, "default_direction": direction,
    })
    return cfg


def text_body(phone: str, text: str, wamid: str, *, clid: str | None = None, ad_id: str | None = None,
              number_id: str = NUMBER_ID, name: str = "Sheena Nelson", sent: float | None = None) -> dict[str, Any]:
    """Meta's documented text message (text-referral.json) for this chat; the referral kept only with `clid`."""
    body = copy.deepcopy(cloud_fixture("text-referral.json"))
    value = body["entry"][0]["changes"][0]["value"]
    value["metadata"]["phone_number_id"] = number_id
    value["contacts"] = [{"profile": {"name": name}, "wa_id": phone}]
    message = value["messages"][0]
    message.update({"from": phone, "id": wamid, "timestamp": str(int(sent or time.time())),
                    "text": {"body": text}})
    if clid is None:
        del message["referral"]
    else:
        message["referral"]["ctwa_clid"] = clid
        if ad_id is not None:
            message["referral"]["source_id"] = ad_id
    return body


def echo_body(to: str, text: str, wamid: str, *, number_id: str = NUMBER_ID) -> dict[str, Any]:
    """Meta's documented coexistence echo (smb-message-echo.json): the business wrote `text` to `to`
    from the WhatsApp Business app."""
    body = fixture_body("smb-message-echo.json", number_id)
    echo = body["entry"][0]["changes"][0]["value"]["message_echoes"][0]
    echo.update({"to": to, "id": wamid, "timestamp": str(int(time.time())), "text": {"body": text}})
    return body


def fixture_body(name: str, number_id: str = NUMBER_ID) -> dict[str, Any]:
    body = copy.deepcopy(cloud_fixture(name))
    body["entry"][0]["changes"][0]["value"]["metadata"]["phone_number_id"] = number_id
    return body


def encode(body: Any) -> bytes:
    return json.dumps(body).encode()


async def post(http: aiohttp.ClientSession, url: str, body: Any, *, secret: str | None = APP_SECRET,
               raw: bytes | None = None) -> tuple[int, Any]:
    """POST a body as Meta does (signed with `secret`; unsigned when None); (status, JSON answer)."""
    data = raw if raw is not None else encode(body)
    headers = {"Content-Type": "application/json"}
    if secret is not None:
        headers[HEADER] = sign(data, secret)
    async with http.post(f"{url}{PATH}", data=data, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None)
