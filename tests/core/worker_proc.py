"""A worker process for the queue tests: `python -m tests.core.worker_proc DSN LEASE_SECONDS`.

Its one handler, `test.record`, writes when it starts and ends into `test_job_runs` and sleeps
`payload.sleep` seconds in between, so tests can see overlaps, repeats and kills.
"""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import aiohttp

from core.context import AppContext
from core.db import create_pool
from core.jobs import Job, JobRegistry, Worker
from core.settings import Settings


async def record(ctx: AppContext, job: Job) -> None:
    run_id = await ctx.pool.fetchval(
        "INSERT INTO test_job_runs (job_key, pid, started_at) VALUES ($1, $2, clock_timestamp()) RETURNING id",
        job.key or str(job.id), os.getpid(),
    )
    await asyncio.sleep(float(job.payload.get("sleep", 0)))
    await ctx.pool.execute("UPDATE test_job_runs SET ended_at = clock_timestamp() WHERE id = $1", run_id)


async def main(dsn: str, lease: float) -> None:
    pool = await create_pool(dsn, max_size=4)
    registry: JobRegistry[AppContext] = JobRegistry()
    registry.register("test.record", record)
    async with aiohttp.ClientSession() as http:
        ctx = AppContext(settings=Settings(database_url=dsn), pool=pool, http=http, llm=None)
        worker = Worker(pool, registry, ctx, concurrency=4, poll_seconds=0.05, lease_seconds=lease)
        stop = asyncio.Event()
        asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
        task = asyncio.create_task(worker.run())
        print("ready", flush=True)
        await stop.wait()
        await worker.stop(grace=5)
        task.cancel()
    await pool.close()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], float(sys.argv[2])))
