"""What capi needs from the packages above it, passed in by the caller (wired in `qualibot/wiring.py`).

capi knows no WhatsApp lead and no dialog table: it asks `DialogContacts` for the person behind a
dialog, and tells `DeliveryHook` which (dialog, level) Meta accepted, inside the transaction that
marks the rows `success`, so the dialog's sent flags and the log never disagree.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class DialogContact:
    direction_id: str | None
    phone: str | None  # digits; None when the chat is known only by its WhatsApp LID
    ctwa_clid: str | None
    email: str | None


@dataclass(frozen=True)
class Delivered:
    dialog_id: int
    level: int
    event_id: str
    sent_at: datetime


DialogContacts = Callable[[asyncpg.Connection, int], Awaitable[DialogContact | None]]
DeliveryHook = Callable[[asyncpg.Connection, Sequence[Delivered]], Awaitable[None]]
