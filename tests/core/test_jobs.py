"""The Postgres job queue: debounce, retries with backoff, lease reclaim, exclusive runs."""

from __future__ import annotations

import asyncio
import itertools
import signal
import subprocess
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import aiohttp
import asyncpg
import pytest

from core.context import AppContext
from core.jobs import IDLE, Job, JobRegistry, Retry, Worker, enqueue, notify
from core.settings import Settings
from tests.helpers import wait_for

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
async def runs_table(db: asyncpg.Pool) -> asyncpg.Pool:
    await db.execute(
        """CREATE TABLE IF NOT EXISTS test_job_runs (
               id bigserial PRIMARY KEY, job_key text, pid int,
               started_at timestamptz, ended_at timestamptz)"""
    )
    await db.execute("TRUNCATE test_job_runs")
    return db


@pytest.fixture
async def in_process_worker(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> AsyncIterator[Callable[[JobRegistry[AppContext]], Worker[AppContext]]]:
    started: list[tuple[Worker[AppContext], asyncio.Task[None]]] = []
    http = aiohttp.ClientSession()
    ctx = AppContext(settings=make_settings(), pool=db, http=http, llm=None)

    def start(registry: JobRegistry[AppContext]) -> Worker[AppContext]:
        worker = Worker(db, registry, ctx, concurrency=4, poll_seconds=0.02, lease_seconds=5)
        started.append((worker, asyncio.create_task(worker.run())))
        return worker

    yield start
    for worker, task in started:
        await worker.stop(grace=2)
        task.cancel()
    await http.close()


async def test_ten_enqueues_of_one_key_within_a_second_run_once(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    ran: list[dict[str, object]] = []

    async def handler(ctx: AppContext, job: Job) -> None:
        ran.append(job.payload)

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.debounce", handler)
    in_process_worker(registry)
    for i in range(10):
        await enqueue(db, "t.debounce", {"n": i}, key="dialog:1", delay=0.3)
        await asyncio.sleep(0.05)
    async def done() -> bool:
        return bool(ran) and await _count(db, "SELECT count(*) FROM jobs") == 0

    await wait_for(done, timeout=5, what="the run")
    await asyncio.sleep(0.5)  # would a second run appear? (the only remaining job would be due by now)
    assert ran == [{"n": 9}]  # one run, with the latest payload


async def test_debounce_never_waits_past_max_wait(db: asyncpg.Pool) -> None:
    first = await enqueue(db, "t.max", {}, key="k", delay=1.0, max_wait=2.0)
    for _ in range(5):
        again = await enqueue(db, "t.max", {}, key="k", delay=10.0, max_wait=2.0)
        assert again == first
    row = await db.fetchrow("SELECT run_at - first_queued_at AS wait FROM jobs WHERE id = $1", first)
    assert row["wait"].total_seconds() == pytest.approx(2.0, abs=0.05)


async def test_coalesce_keeps_the_earlier_run_time(db: asyncpg.Pool) -> None:
    first = await enqueue(db, "t.co", {}, key="k", delay=0.5, mode="coalesce")
    await enqueue(db, "t.co", {}, key="k", delay=30, mode="coalesce")
    wait = await db.fetchval("SELECT extract(epoch FROM run_at - now()) FROM jobs WHERE id = $1", first)
    assert wait < 1


async def test_failing_job_retries_with_growing_delays_and_stops_at_max(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    seen: list[float] = []

    async def handler(ctx: AppContext, job: Job) -> None:
        seen.append(asyncio.get_running_loop().time())
        raise RuntimeError("peer is down")

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.fail", handler, backoff_base=0.1, backoff_max=5)
    in_process_worker(registry)
    job_id = await enqueue(db, "t.fail", {}, max_attempts=4)

    async def failed() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM jobs WHERE id = $1 AND status = 'failed'", job_id)

    row = await wait_for(failed, timeout=10, what="the job to give up")
    assert row["attempts"] == 4 and "peer is down" in row["last_error"]
    assert len(seen) == 4
    gaps = [b - a for a, b in itertools.pairwise(seen)]
    assert gaps[0] < gaps[1] < gaps[2]  # 0.1, 0.2, 0.4 s (±10 % jitter)


async def test_retry_defers_as_asked(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    calls: list[int] = []

    async def handler(ctx: AppContext, job: Job) -> None:
        calls.append(job.attempts)
        if job.attempts == 1:
            raise Retry(defer=0.2, reason="not yet")

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.retry", handler)
    in_process_worker(registry)
    await enqueue(db, "t.retry", {})
    async def done() -> bool:
        return calls == [1, 2] and await _count(db, "SELECT count(*) FROM jobs") == 0

    await wait_for(done, timeout=5, what="the retried run")


async def _count(db: asyncpg.Pool, sql: str) -> int:
    return int(await db.fetchval(sql))


def _spawn_worker(database_url: str, lease: float) -> subprocess.Popen[str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "tests.core.worker_proc", database_url, str(lease)],
        cwd=ROOT, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    assert proc.stdout.readline().strip() == "ready"
    return proc


async def test_job_of_a_worker_killed_with_sigkill_runs_again(runs_table: asyncpg.Pool, database_url: str) -> None:
    db = runs_table
    victim = _spawn_worker(database_url, lease=1.0)
    try:
        await enqueue(db, "test.record", {"sleep": 30}, key="long-job")
        await wait_for(lambda: _count(db, "SELECT count(*) FROM test_job_runs"), timeout=10, what="first start")
        victim.send_signal(signal.SIGKILL)
        victim.wait(timeout=10)
    finally:
        victim.kill()
    await db.execute("UPDATE jobs SET payload = '{\"sleep\": 0}'")  # the rerun may finish quickly
    rescuer = _spawn_worker(database_url, lease=1.0)
    try:
        await wait_for(
            lambda: _count(db, "SELECT count(*) FROM test_job_runs WHERE ended_at IS NOT NULL"),
            timeout=15, what="the reclaimed job to finish",
        )
        runs = await db.fetch("SELECT pid, ended_at FROM test_job_runs ORDER BY id")
        assert [r["pid"] for r in runs] == [victim.pid, rescuer.pid]
        assert runs[0]["ended_at"] is None
        assert await _count(db, "SELECT count(*) FROM jobs") == 0
    finally:
        rescuer.send_signal(signal.SIGTERM)
        rescuer.wait(timeout=10)


async def test_two_worker_processes_never_run_one_job_at_the_same_time(
    runs_table: asyncpg.Pool, database_url: str
) -> None:
    db = runs_table
    workers = [_spawn_worker(database_url, lease=5.0) for _ in range(2)]
    try:
        for i in range(120):
            await enqueue(db, "test.record", {"sleep": 0.05}, key=f"job-{i}")
        async def drained() -> bool:
            return await _count(db, "SELECT count(*) FROM jobs") == 0

        await wait_for(drained, timeout=30, what="the queue to drain")
    finally:
        for w in workers:
            w.send_signal(signal.SIGTERM)
        for w in workers:
            w.wait(timeout=10)
    per_job = await db.fetch("SELECT job_key, count(*) AS n FROM test_job_runs GROUP BY job_key")
    assert len(per_job) == 120 and all(r["n"] == 1 for r in per_job)
    pids = {r["pid"] for r in await db.fetch("SELECT DISTINCT pid FROM test_job_runs")}
    assert pids == {w.pid for w in workers}  # both really worked


async def test_stop_lets_in_flight_jobs_finish_and_hands_back_the_rest(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    finished: list[str] = []

    async def handler(ctx: AppContext, job: Job) -> None:
        await asyncio.sleep(float(job.payload["sleep"]))
        finished.append(str(job.key))

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.slow", handler)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=make_settings(), pool=db, http=http, llm=None)
        worker = Worker(db, registry, ctx, concurrency=4, poll_seconds=0.02, lease_seconds=30)
        await enqueue(db, "t.slow", {"sleep": 0.3}, key="short")
        await enqueue(db, "t.slow", {"sleep": 60}, key="long")
        task = asyncio.create_task(worker.run())

        async def both_running() -> bool:
            return await _count(db, "SELECT count(*) FROM jobs WHERE status = 'running'") == 2

        await wait_for(both_running, timeout=5, what="both jobs to start")
        await worker.stop(grace=1.0)
        task.cancel()
    assert finished == ["short"]
    row = await db.fetchrow("SELECT status, attempts, lease_token FROM jobs WHERE key = 'long'")
    assert row["status"] == "queued" and row["attempts"] == 0 and row["lease_token"] is None


async def test_a_loop_runs_beside_the_jobs_survives_a_failing_step_and_stops_with_the_worker(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    steps: list[str] = []

    async def step(_ctx: AppContext) -> float:
        steps.append("step")
        if len(steps) == 2:
            raise ConnectionError("database away")
        return 0.0 if len(steps) < 4 else 0.01  # at once while there is work, then a pause

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register_loop("test.loop", step)
    with pytest.raises(ValueError, match="registered twice"):
        registry.register_loop("test.loop", step)
    worker = in_process_worker(registry)
    await wait_for(lambda: _at_least(steps, 6), timeout=10, what="the loop to go on after its failed step")
    await worker.stop(grace=2)
    stopped_at = len(steps)
    await asyncio.sleep(0.1)  # a stopped worker's loop takes no further step
    assert len(steps) == stopped_at


async def _at_least(items: list[str], n: int) -> bool:
    return len(items) >= n


async def test_a_hung_handler_is_cancelled_at_its_kinds_timeout_and_the_job_fails(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    cancelled: list[int] = []

    async def hang(ctx: AppContext, job: Job) -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.append(job.attempts)
            raise

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.hang", hang, backoff_base=0.05, timeout=0.2)
    in_process_worker(registry)
    job_id = await enqueue(db, "t.hang", {}, max_attempts=2)

    async def failed() -> asyncpg.Record | None:
        return await db.fetchrow("SELECT * FROM jobs WHERE id = $1 AND status = 'failed'", job_id)

    row = await wait_for(failed, what="the hung job to fail after its two attempts")
    assert cancelled == [1, 2] and row["attempts"] == 2
    assert row["last_error"] == "TimeoutError: timed out after 0.2 s and was cancelled"


async def test_a_second_run_of_a_key_waits_for_the_first_to_finish(
    db: asyncpg.Pool, in_process_worker: Callable[[JobRegistry[AppContext]], Worker[AppContext]]
) -> None:
    events: list[str] = []
    first_may_end = asyncio.Event()

    async def handler(ctx: AppContext, job: Job) -> None:
        run = str(job.payload["run"])
        events.append(f"start {run}")
        if run == "1":
            await first_may_end.wait()
        events.append(f"end {run}")

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.keyed", handler)
    in_process_worker(registry)
    await enqueue(db, "t.keyed", {"run": 1}, key="dialog:7")
    await wait_for(lambda: _has(events, "start 1"), what="the first run to start")
    await enqueue(db, "t.keyed", {"run": 2}, key="dialog:7")  # due at once, free slots: still waits

    async def queued_behind() -> bool:
        return await _count(db, "SELECT count(*) FROM jobs WHERE key = 'dialog:7' AND status = 'queued'") == 1

    await wait_for(queued_behind, what="the second run queued")
    for _ in range(5):  # several claims pass while the first runs; none may take the second
        await _count(db, "SELECT count(*) FROM jobs")
        await asyncio.sleep(0.05)
    assert events == ["start 1"]
    first_may_end.set()
    await wait_for(lambda: _has(events, "end 2"), what="the second run")
    assert events == ["start 1", "end 1", "start 2", "end 2"]


async def test_failed_jobs_are_purged_after_the_retention_and_the_rest_kept(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    await db.execute(
        """INSERT INTO jobs (name, status, updated_at, run_at, key) VALUES
               ('t.old', 'failed', now() - interval '31 days', now() + interval '1 hour', 'a'),
               ('t.recent', 'failed', now() - interval '29 days', now() + interval '1 hour', 'b'),
               ('t.waiting', 'queued', now() - interval '90 days', now() + interval '1 hour', 'c')""")
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=make_settings(), pool=db, http=http, llm=None)
        worker = Worker(db, JobRegistry(), ctx, retention_days=30)
        task = asyncio.create_task(worker.run())

        async def purged() -> bool:
            return await _count(db, "SELECT count(*) FROM jobs WHERE name = 't.old'") == 0

        await wait_for(purged, what="the old failed job to be purged")
        await worker.stop(grace=1)
        await task
    assert [r["name"] for r in await db.fetch("SELECT name FROM jobs ORDER BY name")] == ["t.recent", "t.waiting"]


async def test_an_idle_worker_is_woken_by_an_enqueue_and_by_its_next_run_time_not_by_polling(
    db: asyncpg.Pool, make_settings: Callable[..., Settings]
) -> None:
    ran: list[str] = []
    steps: list[str] = []

    async def handler(ctx: AppContext, job: Job) -> None:
        ran.append(str(job.payload["n"]))

    async def step(_ctx: AppContext) -> float:
        steps.append("step")
        return IDLE

    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("t.wake", handler)
    registry.register_loop("t.woken", step, wake="test_wake")
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=make_settings(), pool=db, http=http, llm=None)
        # polls an hour apart: whatever runs within the deadlines below was woken
        worker = Worker(db, registry, ctx, poll_seconds=3600, idle_poll_seconds=3600)
        task = asyncio.create_task(worker.run())
        try:
            await wait_for(lambda: _at_least(steps, 1), what="the loop's first step")
            await wait_for(lambda: _listening(worker), what="the worker to listen")
            steps.clear()
            await enqueue(db, "t.wake", {"n": 1})
            await wait_for(lambda: _has(ran, "1"), timeout=5, what="the job run on its NOTIFY")
            await enqueue(db, "t.wake", {"n": 2}, delay=0.5)
            await wait_for(lambda: _has(ran, "2"), timeout=5, what="the delayed job run at its time")
            await notify(db, "test_wake")
            await wait_for(lambda: _at_least(steps, 1), timeout=5, what="the loop woken by its channel")
        finally:
            await worker.stop(grace=1)
            await task


async def _has(items: list[str], item: str) -> bool:
    return item in items


async def _listening(worker: Worker[AppContext]) -> bool:
    return worker._listening
