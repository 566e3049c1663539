"""A standard tenant for tests, built through the same `config apply` path operators use.

`tenant_config(...)` returns the YAML-shaped dict (tweak it per test); `seed(pool, cfg)` applies it.
Peer URLs default to unreachable addresses; pass the fakes' URLs.
"""

from __future__ import annotations

import copy
from typing import Any

import asyncpg

from qualibot.tenants import parse_config
from qualibot.tenants_db import apply_config

WEBHOOK_SECRET = "test-webhook-secret-0123456789"
AMO_SECRET = "amo-webhook-secret-0123456789"
B24_APP_TOKEN = "jvh9y1ulvt2m6k5or90v9mg8nn32ozas"
META_TOKEN = "EAAH-test-ad-account-token"
USER_TOKEN = "EAAG-test-user-token"
PIXEL_ID = "1234567890"
WABA_ID = "1029384756"


def tenant_config(
    *,
    evolution_url: str = "http://127.0.0.1:9",
    amocrm_url: str = "http://127.0.0.1:9",
    bitrix_url: str = "http://127.0.0.1:9/rest/1/webhookcode/",
    capi_source: str = "whatsapp",
    crm_connection: str | None = None,
) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "accounts": [
            {
                "id": "clinic",
                "name": "Smile Clinic",
                "default_region": "RU",
                "access_token": USER_TOKEN,
                "ad_accounts": [{"id": "act_1001", "access_token": META_TOKEN}],
                "whatsapp_instances": [
                    {
                        "name": "clinic-main",
                        "api_url": evolution_url,
                        "api_key": "instance-api-key",
                        "webhook_secret": WEBHOOK_SECRET,
                        "default_direction": "implants",
                    }
                ],
                "crm_connections": [
                    {
                        "id": "amo-main",
                        "type": "amocrm",
                        "base_url": amocrm_url,
                        "access_token": "amo-long-lived-token",
                        "account_id": "17769199",
                        "subdomain": "clinic",
                        "webhook_secret": AMO_SECRET,
                    },
                    {
                        "id": "b24-main",
                        "type": "bitrix24",
                        "rest_url": bitrix_url,
                        "application_token": B24_APP_TOKEN,
                    },
                ],
                "directions": [
                    {
                        "id": "implants",
                        "name": "Dental implants",
                        "ad_account": "act_1001",
                        "pixel_id": PIXEL_ID,
                        "whatsapp_business_account_id": WABA_ID,
                        "ad_ids": ["120239177205810192"],
                        "bot_prompt": "You are the assistant of Smile Clinic.",
                        "qualification_prompt": "Questions: which tooth? when? budget? Booking: a date agreed.",
                        "capi": {
                            "enabled": True,
                            "source": capi_source,
                            "crm_connection": crm_connection,
                            "event_names": {1: "LeadSubmitted", 2: "QualifiedLead", 3: "InitiateCheckout"},
                        },
                    }
                ],
            }
        ]
    }
    return copy.deepcopy(cfg)


async def seed(pool: asyncpg.Pool, cfg: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg = cfg or tenant_config()
    await apply_config(pool, parse_config(cfg))
    return cfg
