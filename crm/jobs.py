"""The CRM sync job: one per (connection, entity type, entity id), coalescing webhook bursts.

A CRM that fails or throttles makes the job come back later (the webhook was answered long
before), after an exponential backoff from `crm_retry_base_seconds`, and never sooner than a
throttling answer (or our own rate-limit queue) asks. After `SYNC_MAX_ATTEMPTS` the job is kept
as failed with the reason.
"""

from __future__ import annotations

from core.context import AppContext
from core.errors import Retryable
from core.jobs import Executor, Job, JobRegistry, Retry, backoff_delay, enqueue
from core.logging import get_logger
from core.retention import RetentionLoop
from crm.errors import CrmAuthError, CrmError
from crm.events import remove_old_events
from crm.sync import sync_entity

log = get_logger("crm.jobs")

SYNC_JOB = "crm.sync"
SYNC_MAX_ATTEMPTS = 20  # throttled runs count too; with backoff capped at 10 min, hours of trying
RETRY_MAX_SECONDS = 600.0


def sync_key(connection_id: str, entity_type: str, entity_id: str) -> str:
    return f"{connection_id}:{entity_type}:{entity_id}"


async def schedule_sync(db: Executor, connection_id: str, entity_type: str, entity_id: str, *, delay: float) -> None:
    """Ask for the entity to be read again; webhooks within `delay` become one read."""
    await enqueue(
        db, SYNC_JOB, {"connection_id": connection_id, "entity_type": entity_type, "entity_id": entity_id},
        key=sync_key(connection_id, entity_type, entity_id), mode="coalesce", delay=delay,
        max_attempts=SYNC_MAX_ATTEMPTS, tenant=connection_id,  # fair claiming: one CRM's flood is its own group
    )


async def run_sync(ctx: AppContext, job: Job) -> None:
    p = job.payload
    try:
        await sync_entity(ctx, str(p["connection_id"]), str(p["entity_type"]), str(p["entity_id"]))
    except CrmError as exc:
        final = job.attempts >= job.max_attempts
        event = "crm.auth_failed" if isinstance(exc, CrmAuthError) else "crm.read_failed"
        (log.error if isinstance(exc, CrmAuthError) or final else log.warning)(
            event, connection=p.get("connection_id"), entity_type=p.get("entity_type"),
            entity_id=p.get("entity_id"), attempt=job.attempts, final=final, error=str(exc),
        )
        if final:
            raise
        defer = backoff_delay(job.attempts, ctx.settings.crm_retry_base_seconds, RETRY_MAX_SECONDS)
        if isinstance(exc, Retryable) and exc.retry_after:  # never sooner than the CRM (or our queue) asks
            defer = max(defer, exc.retry_after)
        raise Retry(defer=defer, reason=f"{type(exc).__name__}: {exc}") from exc


def register_jobs(registry: JobRegistry[AppContext]) -> None:
    """Register this package's job handlers by name."""
    registry.register(SYNC_JOB, run_sync)
    registry.register_loop("crm.retention", RetentionLoop("CRM webhook records", remove_old_events))
