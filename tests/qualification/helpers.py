"""Dialogs, messages and a scriptable fake model for the qualification tests."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import asyncpg

from core.jobs import Job
from qualification.jobs import QUALIFY_JOB

PHONE = "79161234567"
CLID = "ARAkLkA8rmlFeiCktEJQ-QTwRiyYHAFDLMNDBH0CD3qpjd0HR4irJ6LEkR7JwFF4XvnO2E4Nx0-eM-GABDLOPaOdRMv-_zfUQ2a"


async def make_dialog(
    db: asyncpg.Pool, *, phone: str = PHONE, direction: str | None = "implants", clid: str | None = CLID,
    messages: Iterable[tuple[str, str]] = (),
) -> tuple[int, list[int]]:
    """A lead and its dialog on the seeded instance; returns (dialog id, ids of `messages`)."""
    lead_id = await db.fetchval(
        """INSERT INTO leads (account_id, instance_name, phone, direction_id, ctwa_clid)
           VALUES ('clinic', 'clinic-main', $1, $2, $3) RETURNING id""",
        phone, direction, clid,
    )
    dialog_id: int = await db.fetchval(
        """INSERT INTO dialog_analysis (account_id, instance_name, contact_phone, lead_id, direction_id)
           VALUES ('clinic', 'clinic-main', $1, $2, $3) RETURNING id""",
        phone, lead_id, direction,
    )
    return dialog_id, await add_messages(db, dialog_id, messages)


async def add_messages(db: asyncpg.Pool, dialog_id: int, messages: Iterable[tuple[str, str]]) -> list[int]:
    ids = []
    for role, text in messages:
        ids.append(await db.fetchval(
            """INSERT INTO messages (instance_name, message_id, dialog_id, role, text)
               VALUES ('clinic-main', $1, $2, $3, $4) RETURNING id""",
            f"test-{uuid.uuid4().hex}", dialog_id, role, text,
        ))
    return ids


def job_for(dialog_id: int, attempts: int = 1) -> Job:
    return Job(id=0, name=QUALIFY_JOB, key=f"dialog:{dialog_id}", payload={"dialog_id": dialog_id},
               attempts=attempts, max_attempts=10, first_queued_at=datetime.now(UTC))


async def dialog_row(db: asyncpg.Pool, dialog_id: int) -> asyncpg.Record:
    row = await db.fetchrow("SELECT * FROM dialog_analysis WHERE id = $1", dialog_id)
    assert row is not None
    return row


async def recorded_levels(db: asyncpg.Pool, dialog_id: int) -> list[int]:
    rows = await db.fetch(
        "SELECT event_level FROM capi_events_log WHERE dialog_analysis_id = $1 ORDER BY event_level",
        dialog_id,
    )
    return [r["event_level"] for r in rows]


def transcript_lines(request: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages the model was shown (one JSON object per line inside the markers)."""
    user = request["messages"][-1]["content"]
    return [json.loads(line) for line in user.splitlines() if line.startswith("{")]


def verdict(*, interested: bool = True, qualified: bool = False, scheduled: bool = False,
            evidence: Iterable[int] = (), reasoning: str = "because") -> str:
    return json.dumps({
        "is_interested": interested, "is_qualified": qualified, "is_scheduled": scheduled,
        "evidence_message_ids": list(evidence), "reasoning": reasoning,
    })


def client_ids(request: dict[str, Any]) -> list[int]:
    return [m["id"] for m in transcript_lines(request) if m["role"] == "client"]


Responder = Callable[[dict[str, Any]], Any]


def scheduled_citing_clients(request: dict[str, Any]) -> str:
    """A model that says "booked" and cites the client's newest message it saw (citing all of them
    is refused as the dialog wholesale: `qualification.verdict`)."""
    return verdict(qualified=True, scheduled=True, evidence=client_ids(request)[-1:])


async def doctor_and_report(qualibot: Callable[..., Any], marker: str, report: str) -> tuple[str, list[dict[str, Any]]]:
    """`qualibot doctor`'s line containing `marker`, and the rows of `qualibot report <report>`."""
    doctor = await qualibot("doctor")
    line = next(x for x in doctor.out.splitlines() if marker in x)
    shown = await qualibot("report", report, "--format", "json")
    assert shown.code == 0, shown.err
    return line, json.loads(shown.out)
