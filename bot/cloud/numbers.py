"""WhatsApp Cloud API numbers (`whatsapp_cloud_numbers`), as the webhook and the replies need them.

A Cloud number is also a `whatsapp_instances` row named `cloud-<phone_number_id>` (channel
`cloud`): the intake, the drain and the dialog job know it by that name. This module holds the
number's Meta side: its WABA, the token replies go with, the app secret that signs its webhooks
and the verify token of Meta's GET verification. The webhook keeps each number and the app secrets
for `TTL` seconds (`bot.ttl_cache`), so the hot path reads nothing before the signature check.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from bot.ttl_cache import TtlCache, TtlValue
from core.jobs import Executor

TTL = 5.0
INSTANCE_PREFIX = "cloud-"


def instance_name(phone_number_id: str) -> str:
    """The `whatsapp_instances` name of a Cloud number: how messages, leads and dialogs name it."""
    return f"{INSTANCE_PREFIX}{phone_number_id}"


@dataclass(frozen=True)
class CloudNumber:
    phone_number_id: str
    account_id: str
    instance_name: str
    waba_id: str
    access_token: str
    app_secret: str


_SELECT = """
SELECT c.phone_number_id, c.account_id, c.instance_name, c.waba_id, c.access_token, c.app_secret
FROM whatsapp_cloud_numbers c
"""


async def load_number(db: Executor, phone_number_id: str) -> CloudNumber | None:
    row = await db.fetchrow(_SELECT + " WHERE c.phone_number_id = $1", phone_number_id)
    return CloudNumber(**dict(row)) if row else None


async def number_of_instance(db: Executor, name: str) -> CloudNumber | None:
    """The Cloud number behind an instance name; None for an Evolution instance."""
    row = await db.fetchrow(_SELECT + " WHERE c.instance_name = $1", name)
    return CloudNumber(**dict(row)) if row else None


async def all_numbers(db: Executor) -> list[CloudNumber]:
    return [CloudNumber(**dict(r)) for r in await db.fetch(_SELECT + " ORDER BY c.phone_number_id")]


async def verify_token_known(db: Executor, token: str) -> bool:
    """Whether some number was configured with this verify token (Meta's GET names no number);
    compared with each in constant time, every one tried (a few per installation)."""
    found = False
    for row in await db.fetch("SELECT verify_token FROM whatsapp_cloud_numbers"):
        found |= hmac.compare_digest(row["verify_token"].encode(), token.encode())
    return found


async def distinct_app_secrets(db: Executor) -> list[str]:
    return [r["app_secret"] for r in await db.fetch("SELECT DISTINCT app_secret FROM whatsapp_cloud_numbers")]


class NumberCache(TtlCache[CloudNumber]):
    def __init__(self, ttl: float = TTL) -> None:
        super().__init__(load_number, ttl)
        # the app secrets a webhook may be signed with (one per Meta app; usually one in all)
        self.app_secrets = TtlValue(distinct_app_secrets, ttl)


