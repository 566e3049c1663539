"""One job queue in PostgreSQL for the whole service: delayed runs, debounce/coalesce keys, retries,
leases, fair claiming, per-kind timeouts, worker loops and LISTEN/NOTIFY wake-ups.

Why not pgqueuer: its `dedupe_key` rejects (or, with `on_conflict="skip"`, drops) a second
enqueue while a job with the key is queued; it cannot *move* the queued job's run time, which is
exactly what the reply buffer needs (every client message pushes the dialog's run 5 s later, but
never past a maximum wait). Expressing that on top of pgqueuer would mean a second table of
timers, so the queue is this one module over the `jobs` table instead.

Semantics:
- `enqueue(..., key=K, mode="debounce")`: at most one *queued* job per (name, K); a new enqueue
  moves its run time to the new one, capped at `first_queued_at + max_wait`. `mode="coalesce"`
  keeps the earlier run time, so a burst becomes one run that is not postponed. A job that is
  already running does not absorb new enqueues: they queue a fresh run, which is not claimed
  until the running one has finished (one running job per key; a unique index is the backstop).
  Set-based enqueues elsewhere (the intake drain) use `keyed_conflict`, the same rule.
- Workers claim due jobs with `FOR UPDATE SKIP LOCKED`, set a lease and renew it while the
  handler runs. A worker that dies stops renewing; when the lease expires another worker
  reclaims the job. Every write after the claim is fenced by the claim's lease token, so a
  worker that lost its lease cannot complete or reschedule a job someone else now holds.
- Fair claiming: due jobs are grouped by (name, tenant) — the tenant is the account (or CRM
  connection) the job works for — and a claim takes the groups' oldest jobs in turns (each
  group's first, then each group's second, ...). A group may hold at most `concurrency - reserve`
  of a worker's slots, so a flood of one kind or tenant (3,000 syncs against a CRM that hangs)
  always leaves slots for the others. The turn is computed over the due jobs: O(due) per claim.
- A handler that raises is retried with exponential backoff until `max_attempts`, then the job
  is kept as `failed` with its last error. Raising `Retry(defer=...)` asks for a specific delay.
  A handler running past its kind's timeout (`register(timeout=)`, else the worker's default) is
  cancelled and counts as a failed attempt. A successful job is deleted: the domain tables, not
  the queue, are the record; failed jobs are purged after `retention_days` (a worker loop).
- A registered *loop* is a step the worker runs again and again beside the jobs (the intake
  drain, the CAPI sender, retention): each step returns how many seconds to wait before the next
  (`IDLE`: until woken); a step that raises is logged and tried again after `LOOP_ERROR_SECONDS`.
- Wake-ups: each worker holds one LISTEN connection (its own, beside the pool). A trigger NOTIFYs
  `qualibot_jobs` when a job is inserted or its run time moves (migration 014), so a due job starts
  at once; an idle worker sleeps until the earliest queued run time (or lease end), the wake-up,
  or `idle_poll_seconds`, the safety poll against a lost notification. A loop registered with `wake=channel` is woken
  by that channel (`notify`, sent in the transaction that creates the work: PostgreSQL delivers
  it at commit, so the work is visible when the wake-up arrives). When the LISTEN connection is
  lost, the worker polls every `poll_seconds` until it is back, then wakes everything once.

The CAPI outbox is a loop of this queue whose rows keep their own claim: docs/ARCHITECTURE.md says why.
"""

from __future__ import annotations

import asyncio
import functools
import math
import random
import uuid
from collections import Counter
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

JOBS_CHANNEL = "qualibot_jobs"  # NOTIFYed by the jobs table's trigger (migration 014)
IDLE = math.inf  # a loop step's answer: nothing to do until woken (or the safety poll)
LOOP_ERROR_SECONDS = 1.0
LISTEN_RETRY_SECONDS = 1.0
PURGE_BATCH = 1000
PURGE_SECONDS = 3600.0


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
    tenant: str | None = None


Handler = Callable[[DepsT, Job], Awaitable[None]]
LoopStep = Callable[[DepsT], Awaitable[float]]  # returns the seconds to wait before the next step
Group = tuple[str, str | None]  # (job name, tenant): the unit of fair claiming


@dataclass(frozen=True)
class JobSpec(Generic[DepsT]):
    handler: Handler[DepsT]
    backoff_base: float = 2.0
    backoff_max: float = 600.0
    timeout: float | None = None  # None: the worker's default


@dataclass
class JobRegistry(Generic[DepsT]):
    """Handlers by job name; each domain package registers its own."""

    specs: dict[str, JobSpec[DepsT]] = field(default_factory=dict)
    loops: dict[str, LoopStep[DepsT]] = field(default_factory=dict)
    wakes: dict[str, str] = field(default_factory=dict)  # loop name → the channel that wakes it
    intervals: dict[str, float] = field(default_factory=dict)  # loop name → its least time between steps

    def register(
        self, name: str, handler: Handler[DepsT], *, backoff_base: float = 2.0, backoff_max: float = 600.0,
        timeout: float | None = None,
    ) -> None:
        if name in self.specs:
            raise ValueError(f"job {name!r} is registered twice")
        self.specs[name] = JobSpec(handler, backoff_base, backoff_max, timeout)

    def register_loop(
        self, name: str, step: LoopStep[DepsT], *, wake: str | None = None, min_interval: float = 0.0
    ) -> None:
        """`wake`: the channel whose NOTIFY starts the next step at once; `min_interval`: but never
        sooner than this after the previous step began (under load, wake-ups then gather work into
        batches instead of starting a step per notification)."""
        if name in self.loops:
            raise ValueError(f"loop {name!r} is registered twice")
        self.loops[name] = step
        if wake is not None:
            self.wakes[name] = wake
        if min_interval > 0:
            self.intervals[name] = min_interval


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
    tenant: str | None = None,
) -> int:
    """Store a job to run after `delay` seconds; returns its id (the surviving one when keyed)."""
    payload = payload or {}
    if key is None:
        job_id: int = await db.fetchval(
            """INSERT INTO jobs (name, payload, run_at, max_attempts, tenant)
               VALUES ($1, $2, now() + make_interval(secs => $3), $4, $5) RETURNING id""",
            name, payload, delay, max_attempts, tenant,
        )
        return job_id
    job_id = await db.fetchval(
        f"""INSERT INTO jobs (name, key, payload, run_at, max_attempts, tenant)
            VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5, $7)
            {keyed_conflict(mode, "$6")}
            RETURNING id""",
        name, key, payload, delay, max_attempts, max_wait if max_wait is not None else 1e9, tenant,
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


async def notify(db: Executor, channel: str) -> None:
    """Wake the loops registered with `wake=channel`, in every process, when this transaction commits."""
    await db.execute("SELECT pg_notify($1, '')", channel)


async def counts_by_status(db: Executor) -> dict[str, int]:
    """How many jobs are in each state (queued, running, failed): the queue's depth for /metrics."""
    return {r["status"]: r["n"] for r in await db.fetch("SELECT status, count(*) AS n FROM jobs GROUP BY status")}


def backoff_delay(attempts: int, base: float, cap: float) -> float:
    """Exponential delay after the `attempts`-th failure, with ±10 % jitter so workers spread out."""
    delay = min(base * (2 ** max(attempts - 1, 0)), cap)
    return float(delay * random.uniform(0.9, 1.1))  # noqa: S311  # jitter, not cryptography


async def purge_failed(pool: asyncpg.Pool, days: float, batch: int = PURGE_BATCH) -> int:
    """Remove up to `batch` failed jobs last touched more than `days` ago; returns how many."""
    done = await pool.execute(
        """DELETE FROM jobs WHERE id IN (
               SELECT id FROM jobs WHERE status = 'failed' AND updated_at < now() - make_interval(secs => $1)
               LIMIT $2)""",
        days * 86400.0, batch,
    )
    return int(done.split()[-1])


# Due jobs (queued, not blocked by a running job of their key; or running with an expired lease),
# numbered per (name, tenant) group; a group gets at most `$3 - running` more, in turns.
_CLAIM_SQL = """
WITH due AS (
    SELECT j.id, j.name, j.tenant, j.run_at,
           row_number() OVER (PARTITION BY j.name, j.tenant ORDER BY j.run_at, j.id) AS turn
    FROM jobs j
    WHERE j.status = 'queued' AND j.run_at <= now()
      AND (j.key IS NULL OR NOT EXISTS (
          SELECT 1 FROM jobs r WHERE r.name = j.name AND r.key = j.key AND r.status = 'running'))
    UNION ALL
    SELECT id, name, tenant, run_at, 1 FROM jobs WHERE status = 'running' AND lease_until < now()
), picked AS (
    SELECT d.id FROM due d
    LEFT JOIN unnest($4::text[], $5::text[], $6::int[]) AS r(name, tenant, n)
           ON r.name = d.name AND r.tenant IS NOT DISTINCT FROM d.tenant
    WHERE d.turn <= $3 - COALESCE(r.n, 0)
    ORDER BY d.turn, d.run_at
    LIMIT $1
)
UPDATE jobs SET status = 'running', attempts = attempts + 1, lease_token = $2,
       lease_until = now() + make_interval(secs => $7), updated_at = now()
WHERE id IN (
    SELECT id FROM jobs
    WHERE id IN (SELECT id FROM picked)
      AND ((status = 'queued' AND run_at <= now()) OR (status = 'running' AND lease_until < now()))
    FOR UPDATE SKIP LOCKED)
RETURNING id, name, key, payload, attempts, max_attempts, first_queued_at, tenant"""

# seconds until something may be claimable: the earliest unblocked queued run, or an expiring lease
_NEXT_DUE_SQL = """
SELECT extract(epoch FROM LEAST(
    (SELECT min(j.run_at) FROM jobs j WHERE j.status = 'queued'
        AND (j.key IS NULL OR NOT EXISTS (
            SELECT 1 FROM jobs r WHERE r.name = j.name AND r.key = j.key AND r.status = 'running'))),
    (SELECT min(lease_until) FROM jobs WHERE status = 'running')) - now())::float8"""


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
        idle_poll_seconds: float = 10.0,
        timeout_seconds: float = 600.0,
        retention_days: float = 30.0,
    ) -> None:
        self.pool = pool
        self.registry = registry
        self.deps = deps
        self.concurrency = concurrency
        self.poll_seconds = poll_seconds  # how often to look while no LISTEN connection is up
        self.idle_poll_seconds = idle_poll_seconds  # the safety poll while listening
        self.lease_seconds = lease_seconds
        self.timeout_seconds = timeout_seconds
        self.retention_days = retention_days
        # the slots one (name, tenant) group may hold: the rest stay free for the other groups
        self.group_slots = max(1, concurrency - max(1, concurrency // 4)) if concurrency > 1 else 1
        self.worker_id = uuid.uuid4().hex[:12]
        self._tasks: set[asyncio.Task[None]] = set()
        self._groups: Counter[Group] = Counter()
        self._loops: list[asyncio.Task[None]] = []
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._wakes: dict[str, list[asyncio.Event]] = {JOBS_CHANNEL: [self._wake]}
        self._listening = False
        self._listener: asyncio.Task[None] | None = None
        self._claiming: asyncio.Task[None] | None = None
        self._next_due: float | None = None  # seconds until the next job is due, as the last claim saw
        self._due_known = False

    async def run(self) -> None:
        log.info("worker.started", worker=self.worker_id, concurrency=self.concurrency)
        self._listener = asyncio.create_task(self._listen())
        self._loops = [asyncio.create_task(self._loop(name, step, self.registry.wakes.get(name)))
                       for name, step in self.registry.loops.items()]
        if self.retention_days > 0:
            self._loops.append(asyncio.create_task(self._loop("core.jobs.purge", self._purge_step, None)))
        self._claiming = asyncio.current_task()
        try:
            await self._claim_loop()
        finally:  # stopped or cancelled: the loops end, the LISTEN connection goes back to the pool
            self._stopping.set()
            self._listener.cancel()
            await asyncio.gather(self._listener, return_exceptions=True)

    async def _claim_loop(self) -> None:
        while not self._stopping.is_set():
            self._wake.clear()  # before the claim: a wake-up during it is not lost
            free = self.concurrency - len(self._tasks)
            claimed: list[tuple[Job, uuid.UUID]] = []
            if free > 0:
                try:
                    claimed = await self._claim(free)
                except Exception as exc:  # database away: keep the loop alive, try again later
                    log.warning("worker.claim_failed", error=str(exc), error_type=type(exc).__name__)
            for job, token in claimed:
                group = (job.name, job.tenant)
                self._groups[group] += 1
                task = asyncio.create_task(self._execute(job, token))
                self._tasks.add(task)
                task.add_done_callback(functools.partial(self._done, group=group))
            if claimed and len(self._tasks) < self.concurrency:
                continue  # there may be more due right now
            await self._sleep(await self._next_wait(full=len(self._tasks) >= self.concurrency))

    async def _next_wait(self, *, full: bool) -> float:
        """How long to sleep when nothing more can be claimed now (a wake-up cuts it short)."""
        if not self._listening:
            return self.poll_seconds
        if full:
            return self.idle_poll_seconds  # a finishing job wakes the loop
        if not self._due_known:
            return self.poll_seconds  # the claim failed: the database is away
        due = self._next_due
        if due is None:
            return self.idle_poll_seconds
        if due <= 0:  # due but not claimed: its group is at its cap here, or another worker holds it
            return self.poll_seconds
        return min(float(due), self.idle_poll_seconds)

    async def _sleep(self, seconds: float, event: asyncio.Event | None = None) -> None:
        try:
            await asyncio.wait_for((event or self._wake).wait(), timeout=seconds)
        except TimeoutError:
            pass

    async def _listen(self) -> None:
        """Hold a LISTEN connection; on (re)connecting, wake everything once (notifications may be lost)."""
        channels = {JOBS_CHANNEL, *self.registry.wakes.values()}
        while not self._stopping.is_set():
            lost = asyncio.Event()
            try:
                conn = await self._connect()
                try:
                    conn.add_termination_listener(lambda _c, lost=lost: lost.set())
                    for channel in channels:
                        await conn.add_listener(channel, self._notified)
                    self._listening = True
                    self._wake_all()
                    while not lost.is_set() and not conn.is_closed() and not self._stopping.is_set():
                        await self._sleep_loop(self.idle_poll_seconds, lost)
                finally:
                    self._listening = False
                    conn.terminate()  # the session ends, and its LISTENs with it
            except Exception as exc:  # database away: poll meanwhile, listen again when it is back
                log.warning("worker.listen_failed", error=str(exc), error_type=type(exc).__name__)
            await self._sleep(LISTEN_RETRY_SECONDS, self._stopping)

    async def _connect(self) -> asyncpg.Connection:
        """A connection of its own for LISTEN, with the pool's connect arguments: held for the
        worker's life, it must not take one of the pool's connections from the jobs."""
        connection: asyncpg.Connection = await asyncpg.connect(
            *self.pool._connect_args, **self.pool._connect_kwargs  # asyncpg has no public getter
        )
        return connection

    def _notified(self, _conn: object, _pid: int, channel: str, _payload: object) -> None:
        for event in self._wakes.get(channel, ()):
            event.set()

    def _wake_all(self) -> None:
        for events in self._wakes.values():
            for event in events:
                event.set()

    async def _loop(self, name: str, step: LoopStep[DepsT], channel: str | None) -> None:
        wake = asyncio.Event()
        if channel is not None:
            self._wakes.setdefault(channel, []).append(wake)
        clock = asyncio.get_running_loop().time
        min_interval = self.registry.intervals.get(name, 0.0)
        while not self._stopping.is_set():
            wake.clear()  # before the step: a wake-up during it brings the next one forward
            started = clock()
            try:
                wait = await step(self.deps)
            except Exception as exc:  # database away, most likely: the next step tries again
                log.warning("worker.loop_failed", loop=name, error=f"{type(exc).__name__}: {exc}")
                wait = LOOP_ERROR_SECONDS
            if math.isinf(wait):
                wait = self.idle_poll_seconds if self._listening else self.poll_seconds
            elif channel is not None and not self._listening:  # no wake-up can come: poll
                wait = min(wait, self.poll_seconds)
            if wait > 0 and not self._stopping.is_set():
                await self._sleep_loop(wait, wake if channel is not None else None)
                rest = started + min_interval - clock()
                if rest > 0:  # woken early: let more work gather first
                    await self._sleep_loop(rest, None)

    async def _sleep_loop(self, seconds: float, wake: asyncio.Event | None) -> None:
        waits = [asyncio.ensure_future(self._stopping.wait())]
        if wake is not None:
            waits.append(asyncio.ensure_future(wake.wait()))
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        for w in waits:
            w.cancel()

    async def _purge_step(self, _deps: DepsT) -> float:
        removed = await purge_failed(self.pool, self.retention_days)
        if removed:
            log.info("jobs.purged", rows=removed, retention_days=self.retention_days)
        return 0.0 if removed >= PURGE_BATCH else PURGE_SECONDS

    def _done(self, task: asyncio.Task[None], *, group: Group) -> None:
        self._tasks.discard(task)
        self._groups[group] -= 1
        if self._groups[group] <= 0:
            del self._groups[group]
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
        """Claim up to `limit` due jobs; when fewer came, also learn when the next one is due."""
        token = uuid.uuid4()
        groups = list(self._groups.items())
        self._due_known = False
        async with self.pool.acquire() as conn:  # one connection for both: one reset, not two
            rows = await conn.fetch(
                _CLAIM_SQL, limit, token, self.group_slots,
                [g[0] for g, _ in groups], [g[1] for g, _ in groups], [n for _, n in groups],
                self.lease_seconds,
            )
            if len(rows) < limit:
                try:
                    self._next_due = await conn.fetchval(_NEXT_DUE_SQL)
                    self._due_known = True
                except Exception as exc:  # the claimed jobs must still run: only the timer is unknown
                    log.warning("worker.claim_failed", error=str(exc), error_type=type(exc).__name__)
        return [(Job(**dict(r)), token) for r in rows]

    async def _execute(self, job: Job, token: uuid.UUID) -> None:
        spec = self.registry.specs.get(job.name)
        if spec is None:
            await self._fail(job, token, f"no handler registered for {job.name!r}", final=True)
            return
        heartbeat = asyncio.create_task(self._heartbeat(job, token))
        timeout = spec.timeout if spec.timeout is not None else self.timeout_seconds
        try:
            async with asyncio.timeout(timeout):
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
            error = f"{type(exc).__name__}: {exc}"
            if isinstance(exc, TimeoutError) and not str(exc):
                error = f"TimeoutError: timed out after {timeout:g} s and was cancelled"
            log.warning("job.failed", job=job.name, job_id=job.id, attempt=job.attempts, final=final, error=error)
            delay = backoff_delay(job.attempts, spec.backoff_base, spec.backoff_max)
            # stored in jobs.last_error: an exception may quote a peer's answer, and with it a secret
            await self._reschedule(job, token, delay, redact(error), final=final)
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
