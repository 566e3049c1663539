"""Databases for the scenarios: a fresh one per scenario, and a private server that can be stopped.

`scenario_database` creates `qualibot_test_<random>` the way tests/dbsetup.py does (on
TEST_DATABASE_URL, the machine's PostgreSQL or an embedded one), applies the migrations and
seeds the standard tenant (tests/seed.py) with the fake peers' URLs.

`PrivatePostgres` is a PostgreSQL server of the scenario's own, in a temporary data directory,
from the binaries the `pgserver` package ships (core.embedded uses the same): the database-down
scenario stops and restarts it with `pg_ctl`. The machine's shared server is never touched.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import tempfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import asyncpg

from core.db import create_pool
from core.embedded import EmbeddedPostgres
from core.migrate import migrate
from tests.dbsetup import fresh_database, with_database
from tests.seed import seed, tenant_config


async def prepare(dsn: str, evolution_url: str) -> asyncpg.Pool:
    """Migrate and seed the database at `dsn`; returns a pool on it."""
    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
    finally:
        await conn.close()
    pool = await create_pool(dsn, max_size=4)
    await seed(pool, tenant_config(evolution_url=evolution_url))
    return pool


@asynccontextmanager
async def scenario_database(tmp_dir: Path, evolution_url: str) -> AsyncIterator[tuple[str, asyncpg.Pool]]:
    async with fresh_database(tmp_dir) as dsn:
        pool = await prepare(dsn, evolution_url)
        try:
            yield dsn, pool
        finally:
            await pool.close()


class PrivatePostgres:
    """A server in `data_dir/pgdata`; `stop(mode)` and `start()` as often as needed."""

    def __init__(self, data_dir: Path) -> None:
        self.embedded = EmbeddedPostgres(data_dir)
        self.server: Any = None
        self.admin_dsn = ""

    def open(self) -> str:
        """initdb (first time) and start, through pgserver; returns a DSN for `qualibot`."""
        self.admin_dsn = self.embedded.start()
        self.server = self.embedded._server  # the pgserver handle: its user, data dir and socket
        return with_database(self.admin_dsn.split("?")[0], "qualibot") + "?" + self.admin_dsn.split("?", 1)[1]

    def _pg_ctl(self, *args: str) -> None:
        from pgserver._commands import POSTGRES_BIN_PATH

        subprocess.run(
            [str(POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.server.pgdata), *args],
            check=True, user=self.server.system_user, timeout=60,
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )

    async def stop(self, mode: str = "fast") -> None:
        """`fast`: clients are disconnected, the server shuts down cleanly; `immediate`: a crash."""
        await asyncio.to_thread(self._pg_ctl, "-w", "-m", mode, "stop")

    async def start(self) -> None:
        socket_dir = self.server.get_postmaster_info().socket_dir
        await asyncio.to_thread(self._pg_ctl, "-w", "-o", '-h ""', "-o", f"-k {socket_dir}",
                                "-l", str(self.server.log), "start")
        # pgserver stops the postmaster it knows of when the last handle closes: tell it of the new one
        from pgserver.utils import PostmasterInfo

        self.server._postmaster_info = PostmasterInfo.read_from_pgdata(self.server.pgdata)

    def close(self) -> None:
        self.embedded.close()


@asynccontextmanager
async def private_postgres() -> AsyncIterator[tuple[PrivatePostgres, str]]:
    """A private server with an empty `qualibot` database; yields the server and that DSN.

    Its data directory is a fresh one under the system temp directory, removed afterwards: not
    under pytest's basetemp, whose parent pytest resets to mode 0700 whenever a session starts,
    which would lock out the server's own system user (pgserver runs it as `pgserver` under root)."""
    data_dir = Path(tempfile.mkdtemp(prefix="qualibot-proof-pg-"))
    server = PrivatePostgres(data_dir)
    dsn = await asyncio.to_thread(server.open)
    try:
        conn = await asyncpg.connect(server.admin_dsn)
        try:
            await conn.execute("CREATE DATABASE qualibot")
        finally:
            await conn.close()
        yield server, dsn
    finally:
        await asyncio.to_thread(server.close)
        shutil.rmtree(data_dir, ignore_errors=True)
