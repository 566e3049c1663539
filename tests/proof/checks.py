"""What every scenario verifies at the end, and the figures it reports.

`Report` collects figures (printed by the scripts, written to docs/RELIABILITY.md) and problems
(each one a broken guarantee; tests assert there are none). The checks read the database and the
fake Graph server, never the service's own word:
- every message acknowledged with a 200 is stored, exactly once;
- every dialog reached its planned level, with one `success` row per (dialog, level);
- the fake Graph server accepted each (dialog, level) exactly once, counted by event_id and by
  (click id, event name), except for the events a scenario names as being in the documented
  at-least-once window, which are counted and reported;
- the service's logs hold no token, secret or full phone number.
"""

from __future__ import annotations

import re
import time
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg

from tests.proof.peers import LLM_KEY, ProofGraph
from tests.proof.traffic import EVENT_NAMES, DialogPlan, Poster
from tests.seed import AMO_SECRET, B24_APP_TOKEN, META_TOKEN, USER_TOKEN, WEBHOOK_SECRET

SECRETS = {
    "Meta ad account token": META_TOKEN, "Meta user token": USER_TOKEN, "Evolution webhook secret": WEBHOOK_SECRET,
    "amoCRM webhook secret": AMO_SECRET, "Bitrix24 application token": B24_APP_TOKEN,
    "amoCRM access token": "amo-long-lived-token", "Evolution api key": "instance-api-key", "LLM key": LLM_KEY,
    "metrics token": "proof-metrics-token-0123456789",
}


@dataclass
class Report:
    name: str
    figures: dict[str, Any] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)

    def check(self, ok: bool, problem: str) -> None:
        if not ok:
            self.problems.append(problem)

    def finish(self) -> Report:
        self.figures["scenario seconds"] = round(time.monotonic() - self.started, 1)
        return self

    def render(self) -> str:
        lines = [f"== {self.name}"]
        lines += [f"  {k}: {v}" for k, v in self.figures.items()]
        lines += [f"  PROBLEM: {p}" for p in self.problems] or ["  all guarantees held"]
        return "\n".join(lines)


async def dialog_levels(pool: asyncpg.Pool) -> dict[str, int]:
    rows = await pool.fetch(
        """SELECT contact_phone, CASE WHEN is_scheduled THEN 3 WHEN is_qualified THEN 2
                                      WHEN is_interested THEN 1 ELSE 0 END AS level
           FROM dialog_analysis""")
    return {r["contact_phone"]: r["level"] for r in rows}


async def settled(pool: asyncpg.Pool, plans: list[DialogPlan]) -> bool:
    """Every dialog at its level, every expected event sent, nothing left pending."""
    levels = await dialog_levels(pool)
    if any(levels.get(p.phone) != p.target for p in plans):
        return False
    row = await pool.fetchrow(
        """SELECT count(*) FILTER (WHERE status = 'success') AS ok,
                  count(*) FILTER (WHERE status = 'pending') AS pending
           FROM capi_events_log""")
    assert row is not None
    return bool(row["ok"] == sum(p.target for p in plans) and row["pending"] == 0)


async def wait_settled(pool: asyncpg.Pool, plans: list[DialogPlan], timeout: float) -> float:
    """Seconds it took; raises TimeoutError with what is missing."""
    started = time.monotonic()
    while not await settled(pool, plans):
        if time.monotonic() - started > timeout:
            levels = await dialog_levels(pool)
            behind = [p.index for p in plans if levels.get(p.phone) != p.target]
            statuses = await pool.fetch("SELECT status, count(*) FROM capi_events_log GROUP BY 1")
            raise TimeoutError(f"not settled after {timeout}s: dialogs below their level {behind[:20]}, "
                               f"events {dict((r[0], r[1]) for r in statuses)}")
        await _pause()
    return round(time.monotonic() - started, 1)


async def wait_replies_done(pool: asyncpg.Pool, timeout: float) -> float:
    """Until the bot has nothing left to do: no message waiting for the drain, no dialog job queued or
    running, no reply between its record and its delivery. Levels can settle before the last burst's
    reply is sent; stopping the processes then would cut that reply off mid-send."""
    started = time.monotonic()
    while await pool.fetchval(
        """SELECT EXISTS (SELECT 1 FROM messages WHERE dialog_id IS NULL AND intake_error IS NULL)
               OR EXISTS (SELECT 1 FROM jobs WHERE name = 'bot.dialog' AND status <> 'failed')
               OR EXISTS (SELECT 1 FROM messages WHERE role = 'bot' AND delivery_status = 'pending')"""):
        if time.monotonic() - started > timeout:
            raise TimeoutError(f"the bot still had work after {timeout}s")
        await _pause()
    return round(time.monotonic() - started, 1)


async def _pause() -> None:
    import asyncio

    await asyncio.sleep(0.2)


async def check_messages(report: Report, pool: asyncpg.Pool, plans: list[DialogPlan], poster: Poster) -> None:
    """Accepted = stored once; sent = stored (the poster retried everything until it was answered)."""
    planned = {mid for p in plans for mid in p.message_ids}
    rows = await pool.fetch(
        "SELECT message_id, count(*) AS n FROM messages WHERE role = 'client' GROUP BY message_id")
    stored = {r["message_id"]: r["n"] for r in rows}
    acked = {d.message_id for d in poster.deliveries if d.acked_at is not None}
    report.figures.update(poster.figures())
    report.figures["messages sent"] = len(planned)
    report.figures["messages stored"] = sum(stored.values())
    twice = sorted(m for m, n in stored.items() if n > 1)
    lost = sorted(acked - set(stored))
    report.figures["acknowledged but not stored"] = len(lost)
    report.figures["stored more than once"] = len(twice)
    report.check(not lost, f"{len(lost)} messages answered 200 are not stored: {lost[:5]}")
    report.check(not twice, f"{len(twice)} messages stored more than once: {twice[:5]}")
    report.check(set(stored) == planned, f"stored messages differ from the planned ones: "
                 f"missing {sorted(planned - set(stored))[:5]}, unexpected {sorted(set(stored) - planned)[:5]}")
    unanswered = planned - acked
    report.check(not unanswered, f"{len(unanswered)} messages never got a 200: {sorted(unanswered)[:5]}")
    odd = {k: v for k, v in poster.answers.items() if k not in (200, 503, "connection", "timeout")}
    report.check(not odd, f"unexpected answers to valid webhooks: {odd}")


async def check_events(
    report: Report, pool: asyncpg.Pool, plans: list[DialogPlan], graph: ProofGraph,
    window: Mapping[str, int] | None = None, expected_twice: Iterable[str] = (),
) -> None:
    """Levels, the audit log and what Meta saw. `window`: event id -> how many times it was in the
    at-least-once window (a request Meta accepted whose outcome the sender did not commit), so
    how many extra deliveries it may have; `expected_twice`: ids that must have been resent."""
    levels = await dialog_levels(pool)
    wrong = [(p.index, p.target, levels.get(p.phone)) for p in plans if levels.get(p.phone) != p.target]
    report.check(not wrong, f"{len(wrong)} dialogs not at their level (index, expected, actual): {wrong[:5]}")
    rows = await pool.fetch(
        """SELECT c.event_id, c.event_level, c.status, c.attempts, d.contact_phone, l.ctwa_clid
           FROM capi_events_log c JOIN dialog_analysis d ON d.id = c.dialog_analysis_id
           JOIN leads l ON l.id = d.lead_id""")
    expected = {e for p in plans for e in p.expected_events()}
    logged = Counter((r["ctwa_clid"], EVENT_NAMES[r["event_level"]]) for r in rows)
    report.check(set(logged) == expected and max(logged.values(), default=1) == 1,
                 "capi_events_log does not hold exactly one row per expected (dialog, level)")
    leaked = await pool.fetchval(
        "SELECT count(*) FROM capi_events_log WHERE request::text LIKE ANY($1) OR response::text LIKE ANY($1)",
        [f"%{secret}%" for secret in SECRETS.values()])
    report.check(leaked == 0, f"{leaked} capi_events_log rows hold a token or secret")
    not_ok = [r["event_id"] for r in rows if r["status"] != "success"]
    report.check(not not_ok, f"{len(not_ok)} events not in status success")
    by_id, by_level = graph.by_event_id(), graph.by_dialog_level()
    logged_ids = {r["event_id"] for r in rows}
    missing = expected - set(by_level)
    extra = set(by_level) - expected
    dup_ids = {i for i, n in by_id.items() if n > 1}
    dup_levels = {k for k, n in by_level.items() if n > 1}
    window, expected_twice = Counter(window or {}), set(expected_twice)
    report.figures.update({
        "events expected (dialog, level)": len(expected),
        "events delivered to Meta (accepted requests' events)": sum(by_id.values()),
        "distinct event_ids delivered": len(by_id),
        "duplicates by event_id": len(dup_ids),
        "duplicates by (dialog, level)": len(dup_levels),
        "Graph requests accepted": len(graph.accepted()),
        "Graph requests total": len(graph.requests) + len(graph.outage_times),
        "max attempts of one event": max((r["attempts"] for r in rows), default=0),
    })
    report.check(not missing, f"{len(missing)} (dialog, level) never delivered: {sorted(missing)[:5]}")
    report.check(not extra, f"{len(extra)} unexpected (dialog, level) delivered: {sorted(extra)[:5]}")
    report.check(set(by_id) == logged_ids, "delivered event_ids differ from capi_events_log's")
    outside = sorted(i for i in dup_ids if by_id[i] > 1 + window[i])
    report.check(not outside, f"{len(outside)} events delivered more often than the at-least-once window "
                 f"allows: {[(i, by_id[i]) for i in outside[:5]]}")
    report.check(expected_twice <= dup_ids, f"{len(expected_twice - dup_ids)} events Meta accepted "
                 "without our commit were not resent (they should have been, with the same event_id)")
    report.check(len(dup_levels) == len(dup_ids), "a (dialog, level) was delivered under two event_ids")


def dump_graph(graph: ProofGraph, path: Path) -> None:
    """Every Graph request (times, status, event ids) as JSON lines, to investigate a failure."""
    import json

    with path.open("w") as out:
        for r in graph.requests:
            out.write(json.dumps({
                "arrived": r.get("arrived"), "answered": r.get("answered"), "status": r.get("status"),
                "event_ids": [e.get("event_id") for e in r.get("events", [])],
            }) + "\n")


_PHONE_RUN = re.compile(r"\d{7,}")


def check_logs(report: Report, logs: Iterable[Path], phones: Iterable[str], *, label: str = "") -> None:
    """No seeded secret or token, and no full phone number, in any captured service output."""
    phones = set(phones)
    scanned = lines = 0
    leaks: list[str] = []
    for path in logs:
        if not path.exists():
            continue
        text = path.read_text(encoding="utf-8", errors="replace")
        scanned += len(text.encode())
        lines += text.count("\n")
        for what, secret in SECRETS.items():
            if secret in text:
                leaks.append(f"{what} in {path.name}")
        found = {run for run in _PHONE_RUN.findall(text) if any(p in run for p in phones)}
        leaks += [f"phone {p[:4]}… in {path.name}" for p in sorted(found)[:3]]
    report.figures[f"log bytes scanned{label}"] = scanned
    report.figures[f"log lines scanned{label}"] = lines
    report.figures[f"secrets or full phones found in logs{label}"] = len(leaks)
    report.check(not leaks, f"logs leak: {leaks[:10]}")
