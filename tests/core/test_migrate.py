"""The migrations runner: concurrent runs apply each file once; an edited applied file or a late low
number is refused; a no-transaction file runs outside one; a wheel carries the files."""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import zipfile
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest

from core.migrate import MigrationError, discover, migrate
from tests.dbsetup import fresh_database

ROOT = Path(__file__).resolve().parents[2]


async def _qualibot(*args: str, env: dict[str, str]) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", *args, cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


@asynccontextmanager
async def _files_and_database(tmp_path: Path, files: dict[str, str]) -> AsyncIterator[tuple[Path, asyncpg.Connection]]:
    """A migrations folder holding `files`, and a connection to a fresh database."""
    folder = tmp_path / "migrations"
    folder.mkdir()
    for name, sql in files.items():
        (folder / name).write_text(sql)
    async with fresh_database(tmp_path) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            yield folder, conn
        finally:
            await conn.close()


async def test_three_concurrent_migrate_commands_apply_each_file_once(tmp_path: Path) -> None:
    async with fresh_database(tmp_path) as dsn:
        env = {**os.environ, "DATABASE_URL": dsn}
        results = await asyncio.gather(*(_qualibot("migrate", env=env) for _ in range(3)))
        assert [code for code, _, _ in results] == [0, 0, 0], results
        conn = await asyncpg.connect(dsn)
        try:
            rows = await conn.fetch("SELECT name FROM schema_migrations ORDER BY version")
        finally:
            await conn.close()
        expected = [m.name for m in discover()]
        assert [r["name"] for r in rows] == expected
        applied_counts = sorted(int(out.split()[1]) for _, out, _ in results)
        assert applied_counts == [0, 0, len(expected)]  # one run did the work, the others found nothing


async def test_an_edited_applied_migration_is_refused(tmp_path: Path) -> None:
    files = {
        "001_first.sql": "CREATE TABLE t_first (id int);",
    }
    async with _files_and_database(tmp_path, files) as (folder, conn):
        assert await migrate(conn, folder) == ["001_first.sql"]
        assert await migrate(conn, folder) == []
        (folder / "001_first.sql").write_text("CREATE TABLE t_first (id bigint);")
        (folder / "002_second.sql").write_text("CREATE TABLE t_second (id int);")
        with pytest.raises(MigrationError, match=r"001_first\.sql was applied and has been edited"):
            await migrate(conn, folder)
        assert await conn.fetchval("SELECT to_regclass('t_second')") is None  # nothing else applied


async def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    files = {
        "001_ok.sql": "CREATE TABLE t_ok (id int);",
        "002_broken.sql": "CREATE TABLE t_broken (id int); SELECT no_such_function();",
    }
    async with _files_and_database(tmp_path, files) as (folder, conn):
        with pytest.raises(asyncpg.UndefinedFunctionError):
            await migrate(conn, folder)
        assert await conn.fetchval("SELECT to_regclass('t_broken')") is None
        assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1


async def test_a_migration_that_cannot_get_its_lock_in_time_stops_and_runs_again_later(tmp_path: Path) -> None:
    """A migration that sets lock_timeout (022 does) stops behind a long report instead of queueing
    the service's writes behind its lock; nothing of it is applied, and a later run applies it."""
    async with fresh_database(tmp_path) as dsn:
        folder = tmp_path / "migrations"
        folder.mkdir()
        (folder / "001_first.sql").write_text("CREATE TABLE t_busy (id int);")
        conn, report = await asyncpg.connect(dsn), await asyncpg.connect(dsn)
        try:
            assert await migrate(conn, folder) == ["001_first.sql"]
            (folder / "002_second.sql").write_text(
                "SET LOCAL lock_timeout = '200ms';\nALTER TABLE t_busy ADD COLUMN note text;")
            async with report.transaction():
                await report.fetch("SELECT * FROM t_busy")  # a long report holds its share lock
                with pytest.raises(MigrationError, match=r"002_second\.sql waited too long for a table lock.*"
                                                         r"nothing of it was applied.*Run `qualibot migrate` again"):
                    await migrate(conn, folder)
                assert await conn.fetchval(
                    "SELECT count(*) FROM information_schema.columns WHERE table_name = 't_busy'") == 1
            assert await migrate(conn, folder) == ["002_second.sql"]
        finally:
            await conn.close()
            await report.close()


async def test_migrate_with_the_database_down_says_so() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    code, _, err = await _qualibot("migrate", env=env)
    assert code == 1
    assert "database unavailable" in err


async def test_a_file_numbered_below_the_last_applied_one_is_refused(tmp_path: Path) -> None:
    """A branch merged late with an old number: databases that applied it at different points would differ."""
    files = {
        "001_first.sql": "CREATE TABLE t_first (id int);",
        "003_third.sql": "CREATE TABLE t_third (id int);",
    }
    async with _files_and_database(tmp_path, files) as (folder, conn):
        assert await migrate(conn, folder) == ["001_first.sql", "003_third.sql"]
        (folder / "002_late.sql").write_text("CREATE TABLE t_late (id int);")
        (folder / "004_next.sql").write_text("CREATE TABLE t_next (id int);")
        with pytest.raises(MigrationError, match=r"002_late\.sql is numbered below 003_third\.sql"):
            await migrate(conn, folder)
        assert await conn.fetchval("SELECT to_regclass('t_late')") is None  # nothing applied, 004 neither
        assert await conn.fetchval("SELECT to_regclass('t_next')") is None
        (folder / "002_late.sql").rename(folder / "005_late.sql")
        assert await migrate(conn, folder) == ["004_next.sql", "005_late.sql"]


CONCURRENT_INDEX = "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_rows_n ON t_rows (n);\n"


async def test_a_no_transaction_migration_builds_an_index_concurrently(tmp_path: Path) -> None:
    files = {
        "001_rows.sql": "CREATE TABLE t_rows (n int); INSERT INTO t_rows VALUES (1), (2);",
        "002_index.sql": CONCURRENT_INDEX,  # without the marker: in a transaction
    }
    async with _files_and_database(tmp_path, files) as (folder, conn):
        with pytest.raises(asyncpg.ActiveSQLTransactionError):  # "cannot run inside a transaction block"
            await migrate(conn, folder)
        (folder / "002_index.sql").write_text(
            "-- qualibot: no-transaction\n" + CONCURRENT_INDEX
            + "-- one statement at a time: two in one string would be one implicit transaction\n"
            + "CREATE INDEX CONCURRENTLY IF NOT EXISTS t_rows_n2 ON t_rows ((n * 2));\n")
        assert await migrate(conn, folder) == ["002_index.sql"]
        valid = await conn.fetch("""SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
                                    WHERE i.indisvalid AND c.relname LIKE 't_rows_n%' ORDER BY 1""")
        assert [r["relname"] for r in valid] == ["t_rows_n", "t_rows_n2"]
        assert await conn.fetchval("SELECT name FROM schema_migrations WHERE version = 2") == "002_index.sql"


def _unpacked_wheel(tmp_path: Path) -> tuple[Path, list[str]]:
    """`pip wheel` of a copy of the project, unpacked; returns where, and the .sql files it holds."""
    source = tmp_path / "src"
    shutil.copytree(ROOT, source, ignore=shutil.ignore_patterns(
        ".git", ".venv", "tests", "bench", "build", "*.egg-info", "__pycache__", ".*_cache", ".qualibot"))
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", str(source), "--no-deps", "-q", "-w", str(tmp_path)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-2000:]
    wheel = zipfile.ZipFile(next(tmp_path.glob("qualibot-*.whl")))
    site = tmp_path / "site"
    wheel.extractall(site)
    sql = sorted(n.split("/", 1)[1] for n in wheel.namelist() if n.startswith("migrations/") and n.endswith(".sql"))
    return site, sql


async def test_a_wheel_ships_the_migrations_and_an_install_of_it_migrates(tmp_path: Path) -> None:
    """Unpacked where the checkout is not on the path, the wheel's own code migrates a fresh database."""
    site, shipped = _unpacked_wheel(tmp_path)
    assert shipped == [m.name for m in discover()]
    async with fresh_database(tmp_path) as dsn:
        env = {**os.environ, "DATABASE_URL": dsn, "PYTHONPATH": str(site)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-c", "import core.migrate, qualibot.cli; print(core.migrate.MIGRATIONS_DIR); "
            "raise SystemExit(qualibot.cli.main(['migrate']))",
            cwd=tmp_path, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await proc.communicate()
        assert proc.returncode == 0, err.decode()[-2000:]
        assert out.decode().splitlines()[0] == str(site / "migrations")  # the wheel's files, not the checkout's
        conn = await asyncpg.connect(dsn)
        try:
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == len(shipped)
        finally:
            await conn.close()
