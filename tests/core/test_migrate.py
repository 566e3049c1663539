"""The migrations runner: concurrent runs apply each file once; an edited applied file is refused."""

from __future__ import annotations

import asyncio
import os
import sys
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
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_first.sql").write_text("CREATE TABLE t_first (id int);")
    async with fresh_database(tmp_path) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            assert await migrate(conn, folder) == ["001_first.sql"]
            assert await migrate(conn, folder) == []
            (folder / "001_first.sql").write_text("CREATE TABLE t_first (id bigint);")
            (folder / "002_second.sql").write_text("CREATE TABLE t_second (id int);")
            with pytest.raises(MigrationError, match=r"001_first\.sql was applied and has been edited"):
                await migrate(conn, folder)
            assert await conn.fetchval("SELECT to_regclass('t_second')") is None  # nothing else applied
        finally:
            await conn.close()


async def test_a_failing_migration_leaves_nothing_half_applied(tmp_path: Path) -> None:
    folder = tmp_path / "migrations"
    folder.mkdir()
    (folder / "001_ok.sql").write_text("CREATE TABLE t_ok (id int);")
    (folder / "002_broken.sql").write_text("CREATE TABLE t_broken (id int); SELECT no_such_function();")
    async with fresh_database(tmp_path) as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            with pytest.raises(asyncpg.UndefinedFunctionError):
                await migrate(conn, folder)
            assert await conn.fetchval("SELECT to_regclass('t_broken')") is None
            assert await conn.fetchval("SELECT count(*) FROM schema_migrations") == 1
        finally:
            await conn.close()


async def test_migrate_with_the_database_down_says_so() -> None:
    env = {**os.environ, "DATABASE_URL": "postgresql://postgres@127.0.0.1:1/none"}
    code, _, err = await _qualibot("migrate", env=env)
    assert code == 1
    assert "database unavailable" in err
