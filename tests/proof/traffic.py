"""Dialogs to play, the Evolution webhooks that carry them, and a poster that behaves like Evolution.

A `DialogPlan` is one WhatsApp chat from a Click-to-WhatsApp ad: its first message carries the
ad referral (`ctwaClid`), and its expected level is fixed by the plan: level 1 for every dialog
(2+ client messages), level 2 when a message carries `#qualified`, level 3 when one carries
`#booked` (see peers.ProofLLM). Bodies are the real fixtures (tests/bot/fixtures/evolution)
with the chat, text and message id replaced.

`Poster` posts a webhook until it is answered 200, like Evolution does: a 5xx, a timeout or a
refused connection is retried after a pause; a 4xx is final. Every answer is counted.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

from tests.proof.peers import BOOKED_MARK, QUALIFIED_MARK
from tests.seed import WEBHOOK_SECRET, tenant_config

TESTS = Path(__file__).resolve().parents[1]
# the peers' real payload shapes, as the bot and CRM tests keep them (copies of ../shared/fixtures)
FIXTURES = {"evolution": TESTS / "bot" / "fixtures" / "evolution", "amocrm": TESTS / "crm" / "fixtures" / "amocrm",
            "bitrix24": TESTS / "crm" / "fixtures" / "bitrix24"}
EVOLUTION = FIXTURES["evolution"]
EVENT_NAMES: dict[int, str] = tenant_config()["accounts"][0]["directions"][0]["capi"]["event_names"]
INSTANCE = "clinic-main"


def fixture(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((EVOLUTION / name).read_text(encoding="utf-8"))
    return data


@dataclass(frozen=True)
class DialogPlan:
    index: int
    phone: str
    clid: str
    target: int  # the level the dialog must reach
    texts: tuple[str, ...]
    message_ids: tuple[str, ...]

    def expected_events(self) -> set[tuple[str, str]]:
        """(click id, event name) of every level up to the target."""
        return {(self.clid, EVENT_NAMES[level]) for level in range(1, self.target + 1)}


def plan_dialogs(dialogs: int, per_dialog: int, tag: str = "A", first: int = 0) -> list[DialogPlan]:
    """`dialogs` chats of `per_dialog` client messages, numbered from `first` (phones and click
    ids differ between numbers); targets cycle 1, 2, 3."""
    if per_dialog < 3:
        raise ValueError("a dialog needs 3+ messages to carry its level marks")
    plans = []
    for d in range(first, first + dialogs):
        target = 1 + d % 3
        texts = [f"Message {i + 1} about implants, dialog {tag}-{d}." for i in range(per_dialog)]
        if target >= 2:
            texts[per_dialog // 3] += f" Lower molar, budget about 1000 USD {QUALIFIED_MARK}"
        if target == 3:
            texts[2 * per_dialog // 3] += f" Tuesday 10:00 suits me, please book {BOOKED_MARK}"
        ids = tuple(f"3EB0{tag}{d:05X}F{i:04X}" for i in range(per_dialog))
        plans.append(DialogPlan(d, f"79165{d:06d}", f"ARAkLkProof{tag}{d:06d}clid", target, tuple(texts), ids))
    return plans


def webhook(plan: DialogPlan, i: int) -> dict[str, Any]:
    """The i-th client message of the dialog as Evolution 2.3.7 posts it."""
    body = copy.deepcopy(fixture("ctwa-text-2.3.7.json" if i == 0 else "text-2.3.7.json"))
    jid = f"{plan.phone}@s.whatsapp.net"
    body["instance"] = INSTANCE
    body["sender"] = "79990000000@s.whatsapp.net"
    data = body["data"]
    data["key"].update({"remoteJid": jid, "remoteJidAlt": jid, "id": plan.message_ids[i]})
    data["message"]["conversation"] = plan.texts[i]
    data["pushName"] = f"Client {plan.index}"
    data["messageTimestamp"] = int(time.time())
    if i == 0:
        data["contextInfo"]["externalAdReply"]["ctwaClid"] = plan.clid
    return body


def interleaved(plans: list[DialogPlan]) -> list[tuple[DialogPlan, int]]:
    """Message 1 of every dialog, then message 2 of every dialog, ...: many dialogs in flight."""
    longest = max(len(p.texts) for p in plans)
    return [(p, i) for i in range(longest) for p in plans if i < len(p.texts)]


@dataclass
class Delivery:
    message_id: str
    answers: list[int | str] = field(default_factory=list)  # status codes, or "connection"/"timeout"
    outcome: str | None = None  # the 200's status: stored | duplicate | echo
    acked_at: float | None = None


@dataclass
class Poster:
    """Posts webhooks like Evolution: retry on 5xx and on no answer, stop on 200 or 4xx."""

    urls: list[str]
    concurrency: int = 8
    retry_pause: float = 0.2
    give_up_after: float = 120.0
    path: str = "/webhooks/evolution"
    answers: Counter[int | str] = field(default_factory=Counter)
    timeline: list[tuple[float, int | str]] = field(default_factory=list)  # (when answered, status)
    deliveries: list[Delivery] = field(default_factory=list)
    acked: int = 0
    _turn: int = 0

    def __post_init__(self) -> None:
        self._gate = asyncio.Semaphore(self.concurrency)
        self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=10))

    async def close(self) -> None:
        await self._http.close()

    def next_url(self) -> str:
        self._turn += 1
        return self.urls[self._turn % len(self.urls)]

    async def post_once(self, url: str, body: Any, headers: dict[str, str]) -> tuple[int | str, Any]:
        try:
            async with self._http.post(url + self.path, json=body, headers=headers) as resp:
                return resp.status, await resp.json(content_type=None)
        except TimeoutError:
            return "timeout", None
        except (aiohttp.ClientError, OSError):
            return "connection", None

    async def deliver(self, body: dict[str, Any], message_id: str, url: str | None = None) -> Delivery:
        delivery = Delivery(message_id)
        self.deliveries.append(delivery)
        headers = {"X-Webhook-Secret": WEBHOOK_SECRET}
        deadline = time.monotonic() + self.give_up_after
        async with self._gate:
            while time.monotonic() < deadline:
                status, answer = await self.post_once(url or self.next_url(), body, headers)
                delivery.answers.append(status)
                self.timeline.append((time.monotonic(), status))
                self.answers[status] += 1
                if status == 200:
                    delivery.outcome = str((answer or {}).get("status"))
                    delivery.acked_at = time.monotonic()
                    self.acked += 1
                    return delivery
                if isinstance(status, int) and 400 <= status < 500:
                    return delivery
                await asyncio.sleep(self.retry_pause)
        return delivery

    async def play(self, messages: Iterable[tuple[DialogPlan, int]], rate: float | None = None,
                   copies: int = 1) -> None:
        """Post every message (`copies` times each, concurrently, spread over the urls),
        at about `rate` messages a second (None: as fast as the concurrency allows)."""
        tasks = []
        started = time.monotonic()
        for n, (plan, i) in enumerate(messages):
            if rate:
                lag = started + n / rate - time.monotonic()
                if lag > 0:
                    await asyncio.sleep(lag)
            body = webhook(plan, i)
            for _ in range(copies):
                tasks.append(asyncio.create_task(self.deliver(body, plan.message_ids[i])))
            if len(tasks) > 4 * self.concurrency:  # keep memory flat on long runs
                tasks = [t for t in tasks if not t.done()]
        await asyncio.gather(*tasks)

    async def until_acked(self, count: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while self.acked < count:
            if time.monotonic() > deadline:
                raise TimeoutError(f"only {self.acked} of {count} messages acknowledged")
            await asyncio.sleep(0.01)

    def figures(self) -> dict[str, Any]:
        acked_ids = {d.message_id for d in self.deliveries if d.acked_at is not None}
        outcomes = Counter(d.outcome for d in self.deliveries if d.outcome)
        return {
            "webhook posts": sum(self.answers.values()),
            "answers": {str(k): v for k, v in sorted(self.answers.items(), key=lambda kv: str(kv[0]))},
            "messages acknowledged (200)": len(acked_ids),
            "200 outcomes": dict(outcomes),
        }
