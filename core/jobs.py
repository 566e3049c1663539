"""A small job queue in PostgreSQL: delayed runs, debounce/coalesce keys, retries, leases.

Why not pgqueuer: its `dedupe_key` rejects (or, with `on_conflict="skip"`, drops) a second
enqueue while a job with the key is queued; it cannot *move* the queued job's run time, which is
exactly what the reply buffer needs (every client message pushes the dialog's run 5 s later, but
never past a maximum wait). Expressing that on top of pgqueuer would mean a second table of
timers, so the queue is this one module over the `jobs` table instead.

Semantics:
- `enqueue(..., key=K, mode="debounce")`: at most one *queued* job per (name, K); a new enqueue
  moves its run time to the new one, capped at `first_queued_at + max_wait`. `mode="coalesce"`
  keeps the earlier run time, so a burst becomes one run that is not postponed. A job that is
  already running does not absorb new enqueues: they queue a fresh run after it.
- Workers claim due jobs with `FOR UPDATE SKIP LOCKED`, set a lease and renew it while the
  handler runs. A worker that dies stops renewing; when the lease expires another worker
  reclaims the job. Every write after the claim is fenced by the claim's lease token, so a
  worker that lost its lease cannot complete or reschedule a job someone else now holds.
- A handler that raises is retried with exponential backoff until `max_attempts`, then the job
  is kept as `failed` with its last error. Raising `Retry(defer=...)` asks for a specific delay.
  A successful job is deleted: the domain tables, not the queue, are the record.
- A registered *loop* is a step the worker runs again and again beside the jobs (the intake
  drain): each step returns how many seconds to wait before the next; a step that raises is
  logged and tried again after `LOOP_ERROR_SECONDS`.
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import asyncpg

from core.errors import Permanent, Retryable
from core.logging import get_logger
from core.metrics import JOBS_DONE
from core.secrets import redact

log = get_logger("core.jobs")

DepsT = TypeVar("DepsT")
Mode = Literal["debounce", "coalesce"]
Executor: TypeAlias = asyncpg.Pool | asyncpg.Connection


class Retry(Retryable):  # reads as control flow: raise Retry(defer=30)
    """Raised by a handler to run the job again after `defer` seconds (counts as an attempt)."""

    def __init__(self, defer: float, reason: str = "retry requested") -> None:
        super().__init__(reason, retry_after=defer)
        self.defer = defer


@dataclass(frozen=True)
class Job:
    id: int
    name: str
    key: str | None
    payload: dict[str, Any]
    attempts: int
    max_attempts: int
    first_queued_at: datetime


Handler = Callable[[DepsT, Job], Awaitable[None]]
LoopStep = Callable[[DepsT], Awaitable[float]]  # returns the seconds to wait before the next step
LOOP_ERROR_SECONDS = 1.0


@dataclass(frozen=True)
class JobSpec(Generic[DepsT]):
    handler: Handler[DepsT]
    backoff_base: float = 2.0
    backoff_max: float = 600.0


@dataclass
class JobRegistry(Generic[DepsT]):
    """Handlers by job name; each domain package registers its own."""

    specs: dict[str, JobSpec[DepsT]] = field(default_factory=dict)
    loops: dict[str, LoopStep[DepsT]] = field(default_factory=dict)

    def register(
        self, name: str, handler: Handler[DepsT], *, backoff_base: float = 2.0, backoff_max: float = 600.0
    ) -> None:
        if name in self.specs:
            raise ValueError(f"job {name!r} is registered twice")
        self.specs[name] = JobSpec(handler, backoff_base, backoff_max)

    def register_loop(self, name: str, step: LoopStep[DepsT]) -> None:
        if name in self.loops:
            raise ValueError(f"loop {name!r} is registered twice")
        self.loops[name] = step


async def enqueue(
    db: Executor,
    name: str,
    payload: dict[str, Any] | None = None,
    *,
    key: str | None = None,
    delay: float = 0.0,
    mode: Mode = "debounce",
    max_wait: float | None = None,
    max_attempts: int = 10,
) -> int:
    """Store a job to run after `delay` seconds; returns its id (the surviving one when keyed)."""
    payload = payload or {}
    if key is None:
        job_id: int = await db.fetchval(
            """INSERT INTO jobs (name, payload, run_at, max_attempts)
               VALUES ($1, $2, now() + make_interval(secs => $3), $4) RETURNING id""",
            name, payload, delay, max_attempts,
        )
        return job_id
    job_id = await db.fetchval(
        f"""INSERT INTO jobs (name, key, payload, run_at, max_attempts)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5)
            {keyed_conflict(mode, "$6")}
            RETURNING id""",
        name, key, payload, delay, max_attempts, max_wait if max_wait is not None else 1e9,
    )
    return job_id


def keyed_conflict(mode: Mode, max_wait: str) -> str:
    """The ON CONFLICT clause of a keyed INSERT INTO jobs: the debounce or coalesce rule above.

    `max_wait` is the SQL for the seconds a job may wait after its first enqueue (a parameter such
    as "$6"). Shared with set-based enqueues elsewhere (the intake drain) so the rule lives here.
    """
    earliest = "jobs.run_at, " if mode == "coalesce" else ""
    return f"""ON CONFLICT (name, key) WHERE status = 'queued' AND key IS NOT NULL DO UPDATE SET
        run_at = LEAST({earliest}EXCLUDED.run_at, jobs.first_queued_at + make_interval(secs => {max_wait})),
        payload = EXCLUDED.payload, updated_at = now()"""


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential delay after the `attempts`-th failure, with ±10 % jitter so workers spread out."""
    delay = min(base * (2 ** max(attempts - 1, 0)), cap)
    return float(delay * random.uniform(0.9, 1.1))  # noqa: S311  # jitter, not cryptography


class Worker(Generic[DepsT]):
    """Claims and runs jobs until stopped; any number of workers may share one database."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        registry: JobRegistry[DepsT],
        deps: DepsT,
        *,
        concurrency: int = 8,
        poll_seconds: float = 0.5,
        lease_seconds: float = 60.0,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.deps = deps
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds
        self.lease_seconds = lease_seconds
        self.worker_id = uuid.uuid4().hex[:12]
        self._tasks: set[asyncio.Task[None]] = set()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._claiming: asyncio.Task[None] | None = None

    async def run(self) -> None:
        log.info("worker.started", worker=self.worker_id, concurrency=self.concurrency)
        self._loops = [asyncio.create_task(self._loop(name, step)) for name, step in self.registry.loops.items()]
        self._claiming = asyncio.current_task()
        while not self._stopping.is_set():
            free = self.concurrency - len(self._tasks)
            claimed: list[tuple[Job, uuid.UUID]] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception as exc:  # database away: keep the loop alive, try again later
                    log.warning("worker.claim_failed", error=str(exc), error_type=type(exc).__name__)
            for job, token in claimed:
                task = asyncio.create_task(self._execute(job, token))
                self._tasks.add(task)
                task.add_done_callback(self._done)
            if not claimed or len(self._tasks) >= self.concurrency:
                self._wake.clear()
                try:
                    await asyncio.wait_for(self._wake.wait(), timeout=self.poll_seconds)
                except TimeoutError:
                    pass

    async def _loop(self, name: str, step: LoopStep[DepsT]) -> None:
        while not self._stopping.is_set():
            try:
                wait = await step(self.deps)
            except Exception as exc:  # database away, most likely: the next step tries again
                log.warning("worker.loop_failed", loop=name, error=f"{type(exc).__name__}: {exc}")
                wait = LOOP_ERROR_SECONDS
            if wait > 0:
                try:
                    await asyncio.wait_for(self._stopping.wait(), timeout=wait)
                except TimeoutError:
                    pass

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        self._wake.set()

    async def stop(self, grace: float) -> None:
        """Stop claiming; let running jobs finish for `grace` seconds, then hand the rest back."""
        self._stopping.set()
        self._wake.set()
        # a claim committed just before the stop hands its jobs to run() only when that query returns:
        # wait for run() to leave its loop, or those jobs would start after the stop and be orphaned
        claiming = self._claiming
        if claiming is not None and claiming is not asyncio.current_task() and not claiming.done():
            await asyncio.wait({claiming}, timeout=grace)
        running = self._tasks | set(self._loops)
        if running:
            _, pending = await asyncio.wait(running, timeout=grace)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)
        log.info("worker.stopped", worker=self.worker_id)

    async def _claim(self, limit: int) -> list[tuple[Job, uuid.UUID]]:
        token = uuid.uuid4()
        rows = await self.pool.fetch(
            """UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = $2,
                      lease_until = now() + make_interval(secs => $3), updated_at = now()
               WHERE id IN (
                   SELECT id FROM jobs
                   WHERE (status = 'queued' AND run_at <= now())
                      OR (status = 'running' AND lease_until < now())
                   ORDER BY run_at
                   LIMIT $1
                   FOR UPDATE SKIP LOCKED)
               RETURNING id, name, key, payload, attempts, max_attempts, first_queued_at""",
            limit, token, self.lease_seconds,
        )
        return [(Job(**dict(r)), token) for r in rows]

    async def _execute(self, job: Job, token: uuid.UUID) -> None:
        spec = self.registry.specs.get(job.name)
        if spec is None:
            await self._fail(job, token, f"no handler registered for {job.name!r}", final=True)
            return
        heartbeat = asyncio.create_task(self._heartbeat(job, token))
        try:
            await spec.handler(self.deps, job)
        except asyncio.CancelledError:
            # shutdown past the grace period: hand the job back at once instead of waiting for the lease
            await self._release(job, token)
            raise
        except Retry as retry:
            JOBS_DONE.labels(job.name, "retry").inc()
            await self._reschedule(job, token, retry.defer, str(retry), final=False)
        except Exception as exc:
            # a Permanent error fails the job at once; a Retryable one (or a bug) is retried with backoff
            final = isinstance(exc, Permanent) or job.attempts >= job.max_attempts
            JOBS_DONE.labels(job.name, "failed" if final else "error").inc()
            log.warning(
                "job.failed", job=job.name, job_id=job.id, attempt=job.attempts, final=final,
                error=f"{type(exc).__name__}: {exc}",
            )
            delay = backoff_delay(job.attempts, spec.backoff_base, spec.backoff_max)
            # stored in jobs.last_error: an exception may quote a peer's answer, and with it a secret
            await self._reschedule(job, token, delay, redact(f"{type(exc).__name__}: {exc}"), final=final)
        else:
            JOBS_DONE.labels(job.name, "ok").inc()
            await self._guarded(
                self.pool.execute("DELETE FROM jobs WHERE id = $1 AND lease_token = $2", job.id, token)
            )
        finally:
            heartbeat.cancel()

    async def _heartbeat(self, job: Job, token: uuid.UUID) -> None:
        while True:
            await asyncio.sleep(self.lease_seconds / 3)
            try:
                await self.pool.execute(
                    """UPDATE jobs SET lease_until = now() + make_interval(secs => $3)
                       WHERE id = $1 AND lease_token = $2""",
                    job.id, token, self.lease_seconds,
                )
            except Exception as exc:
                log.warning("job.heartbeat_failed", job_id=job.id, error=str(exc))

    async def _reschedule(
        self, job: Job, token: uuid.UUID, delay: float, error: str, *, final: bool, refund: bool = False
    ) -> None:
        """Queue the job again after `delay`; `refund` gives back the attempt its claim counted."""
        if final:
            await self._fail(job, token, error, final=True)
            return
        try:
            await self.pool.execute(
                """UPDATE jobs SET status = 'queued', run_at = now() + make_interval(secs => $3),
                          attempts = greatest(attempts - $5, 0),
                          lease_token = NULL, lease_until = NULL, last_error = $4, updated_at = now()
                   WHERE id = $1 AND lease_token = $2""",
                job.id, token, delay, error[:2000], 1 if refund else 0,
            )
        except asyncpg.UniqueViolationError:
            # a newer run of the same key is already queued and will do this work
            await self._guarded(
                self.pool.execute("DELETE FROM jobs WHERE id = $1 AND lease_token = $2", job.id, token)
            )
        except Exception as exc:
            log.warning("job.reschedule_failed", job_id=job.id, error=str(exc))

    async def _fail(self, job: Job, token: uuid.UUID, error: str, *, final: bool) -> None:
        log.error("job.gave_up", job=job.name, job_id=job.id, attempts=job.attempts, error=error[:500])
        await self._guarded(
            self.pool.execute(
                """UPDATE jobs SET status = 'failed', lease_token = NULL, lease_until = NULL,
                          last_error = $3, updated_at = now()
                   WHERE id = $1 AND lease_token = $2""",
                job.id, token, error[:2000],
            )
        )

    async def _release(self, job: Job, token: uuid.UUID) -> None:
        # a release is not a failed attempt
        await self._reschedule(job, token, 0.0, "released at shutdown", final=False, refund=True)

    @staticmethod
    async def _guarded(awaitable: Awaitable[Any]) -> None:
        # if the database is gone the lease simply expires and the job is reclaimed later
        try:
            await awaitable
        except Exception as exc:
            log.warning("job.bookkeeping_failed", error=str(exc))
