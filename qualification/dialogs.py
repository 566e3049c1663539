"""What the qualification job reads about a dialog, and the analysis columns it writes back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import cast

import asyncpg

from core.jobs import Executor
from qualification.prompt import WINDOW_MESSAGES, Role, Transcript, TranscriptMessage

MAX_DETAIL_CHARS = 500


@dataclass(frozen=True)
class DialogState:
    id: int
    direction_id: str | None
    level: int  # highest level already recorded (0..3)
    analyzed_message_id: int | None
    capi_enabled: bool
    capi_source: str | None
    qualification_prompt: str | None
    client_messages: int
    last_client_message_id: int | None
    suspicious_message_id: int | None = None  # a client message addressed to the model (verdict.py)

    @property
    def qualifies_from_whatsapp(self) -> bool:
        return self.capi_enabled and self.capi_source == "whatsapp"

    @property
    def has_unanalysed_client_messages(self) -> bool:
        # messages.id is a sequence, so "newer than the last analysis" is "a larger id". The burst
        # buffer runs this job seconds after the last insert, long after their commits settled.
        newest = self.last_client_message_id
        return newest is not None and newest > (self.analyzed_message_id or 0)


async def load_state(db: Executor, dialog_id: int) -> DialogState | None:
    row = await db.fetchrow(
        """SELECT d.id, d.direction_id, d.is_interested, d.is_qualified, d.is_scheduled,
                  d.analyzed_message_id, d.analysis_suspicious_message_id,
                  ad.capi_enabled, ad.capi_source, ad.qualification_prompt,
                  c.n AS client_messages, c.last_id AS last_client_message_id
           FROM dialog_analysis d
           LEFT JOIN account_directions ad ON ad.id = d.direction_id
           CROSS JOIN LATERAL (
               SELECT count(*) AS n, max(m.id) AS last_id FROM messages m
               WHERE m.dialog_id = d.id AND m.role = 'client') c
           WHERE d.id = $1""",
        dialog_id,
    )
    if row is None:
        return None
    level = 3 if row["is_scheduled"] else 2 if row["is_qualified"] else 1 if row["is_interested"] else 0
    return DialogState(
        id=row["id"],
        direction_id=row["direction_id"],
        level=level,
        analyzed_message_id=row["analyzed_message_id"],
        capi_enabled=bool(row["capi_enabled"]),
        capi_source=row["capi_source"],
        qualification_prompt=row["qualification_prompt"],
        client_messages=row["client_messages"],
        last_client_message_id=row["last_client_message_id"],
        suspicious_message_id=row["analysis_suspicious_message_id"],
    )


async def load_transcript(db: Executor, dialog_id: int, window: int = WINDOW_MESSAGES) -> Transcript:
    """The newest `window` messages of the dialog, oldest first."""
    rows = await db.fetch(
        """SELECT id, role, text, media_type FROM (
               SELECT id, role, text, media_type FROM messages WHERE dialog_id = $1
               ORDER BY id DESC LIMIT $2) newest
           ORDER BY id""",
        dialog_id, window,
    )
    total = await db.fetchval("SELECT count(*) FROM messages WHERE dialog_id = $1", dialog_id)
    messages = [
        TranscriptMessage(r["id"], cast(Role, r["role"]), r["text"] or "", r["media_type"]) for r in rows
    ]
    return Transcript(messages, omitted=max(int(total) - len(messages), 0))


async def save_analysis(
    conn: asyncpg.Connection, dialog_id: int, *, analyzed_message_id: int | None, detail: str,
    reasoning: str, suspicious: int | None = None,
) -> None:
    """A completed analysis: move the watermark (never backwards) and keep the model's reasoning.
    `suspicious`: a client message addressed to the model; the mark stays once set."""
    await conn.execute(
        """UPDATE dialog_analysis
           SET analyzed_message_id = GREATEST(analyzed_message_id, $2), analyzed_at = now(),
               analysis_status = 'ok', analysis_detail = $3, analysis_reasoning = $4, updated_at = now(),
               analysis_suspicious_message_id = COALESCE($5, analysis_suspicious_message_id),
               analysis_suspicious_at = CASE WHEN $5::bigint IS NULL THEN analysis_suspicious_at
                                             ELSE COALESCE(analysis_suspicious_at, now()) END
           WHERE id = $1""",
        dialog_id, analyzed_message_id, detail[:MAX_DETAIL_CHARS], reasoning, suspicious,
    )


async def mark_unanalysed(db: Executor, dialog_id: int, status: str, detail: str) -> None:
    """`not_analysed` (no criteria or no LLM) or `failed` (the LLM did not answer usably). The
    watermark stays, so the same messages are analysed once the cause is gone."""
    await db.execute(
        """UPDATE dialog_analysis
           SET analysis_status = $2, analysis_detail = $3, updated_at = now()
           WHERE id = $1""",
        dialog_id, status, detail[:MAX_DETAIL_CHARS],
    )


SUSPICIOUS_SQL = """
SELECT direction_id, count(*) AS n, max(analysis_suspicious_at) AS latest
FROM dialog_analysis WHERE analysis_suspicious_message_id IS NOT NULL
GROUP BY direction_id ORDER BY direction_id NULLS FIRST
"""


async def count_suspicious(db: Executor) -> list[tuple[str | None, int]]:
    """(direction, dialogs whose analysis is marked suspicious) for each direction that has some."""
    return [(r["direction_id"], int(r["n"])) for r in await db.fetch(SUSPICIOUS_SQL)]


async def remove_old_reasoning(pool: asyncpg.Pool, before: datetime, batch: int) -> int:
    """Retention (`core.retention`): the model's reasoning may quote the client; remove it from up
    to `batch` dialogs last analysed before `before`. Returns how many."""
    return int(await pool.fetchval(
        """WITH old AS (SELECT id FROM dialog_analysis
                        WHERE analysis_reasoning IS NOT NULL AND analyzed_at < $1
                        ORDER BY analyzed_at LIMIT $2 FOR UPDATE SKIP LOCKED),
                done AS (UPDATE dialog_analysis d SET analysis_reasoning = NULL
                         FROM old WHERE d.id = old.id RETURNING 1)
           SELECT count(*) FROM done""",
        before, batch,
    ))
