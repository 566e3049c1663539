"""Click-id drift: per instance, the share of its newest chats that arrived with an ad referral.

Evolution 2.4 drops a text message's ad context (`prepareMessage` takes `contextInfo` from
`messageContextInfo`, evolution-api.md "Read from Evolution's own source"), and WhatsApp is moving
ad data into opaque fields (`ctwaPayload`, `conversionData`). Either way the chats keep coming and
the click ids stop: attribution is lost silently, for weeks. An instance that had chats from ads
and has none among its last N new chats (`QUALIBOT_CLICK_ID_DRIFT_CHATS`) is reported by
`qualibot doctor`; `/metrics` exposes the share per instance.
"""

from __future__ import annotations

from dataclasses import dataclass

import asyncpg

from bot.instances import instance_names
from qualification import leads


@dataclass(frozen=True)
class ReferralShare:
    instance: str
    chats: int  # the instance's newest chats looked at (at most the window)
    with_referral: int  # how many of them arrived with an ad referral
    ever: bool  # any chat of the instance ever did

    @property
    def share(self) -> float | None:
        return self.with_referral / self.chats if self.chats else None

    def drifted(self, window: int) -> bool:
        """It had chats from ads, and none among a full window of its newest chats."""
        return self.ever and self.chats >= window and self.with_referral == 0


async def referral_shares(db: asyncpg.Pool, window: int) -> list[ReferralShare]:
    return [ReferralShare(*counts) for counts in await leads.referral_counts(db, await instance_names(db), window)]
