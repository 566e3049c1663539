"""Numbered SQL migrations: applied in order, once, under an advisory lock, checksummed.

Files live in `migrations/` beside the packages (`NNN_name.sql`). Each file is applied in its own
transaction together with its row in `schema_migrations`, so a failure leaves nothing half-applied.
Concurrent `qualibot migrate` runs serialise on the advisory lock; the second finds nothing to do.
An applied file whose text changed is refused: the database would no longer match the repository.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from dataclasses import dataclass
from pathlib import Path

import asyncpg

from core.errors import Permanent
from core.logging import get_logger

log = get_logger("core.migrate")

MIGRATIONS_DIR = Path(__file__).resolve().parent.parent / "migrations"
_LOCK_KEY = 0x7175616C69626F74  # "qualibot"; one lock id for every qualibot database
_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")


class MigrationError(Permanent):
    """The migrations on disk and in the database disagree."""


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def discover(directory: Path = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted(directory.glob("*.sql")):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_lowercase_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    migrations = discover(directory)
    applied_now: list[str] = []
    await conn.execute("SELECT pg_advisory_lock($1)", _LOCK_KEY)
    try:
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version integer PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        applied = {r["version"]: r for r in rows}
        for m in migrations:
            row = applied.get(m.version)
            if row is not None and row["checksum"] != m.checksum:
                raise MigrationError(
                    f"{m.name} was applied and has been edited since (checksum differs); "
                    "add a new migration instead of changing an applied one"
                )
        for m in migrations:
            if m.version in applied:
                continue
            async with conn.transaction():
                await conn.execute(m.sql)
                await conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                    m.version,
                    m.name,
                    m.checksum,
                )
            log.info("migrate.applied", migration=m.name)
            applied_now.append(m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def check_current(conn: asyncpg.Connection, directory: Path = MIGRATIONS_DIR) -> None:
    """Refuse to run against a database whose applied migrations differ from the files."""
    migrations = {m.version: m for m in discover(directory)}
    exists = await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL")
    if not exists:
        raise MigrationError("the database has no schema yet; run `qualibot migrate`")
    rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
    for r in rows:
        m = migrations.get(r["version"])
        if m is not None and m.checksum != r["checksum"]:
            raise MigrationError(f"{m.name} was applied and has been edited since (checksum differs)")
    pending = sorted(set(migrations) - {r["version"] for r in rows})
    if pending:
        raise MigrationError(f"{len(pending)} migration(s) pending; run `qualibot migrate`")


async def installation_id(conn: asyncpg.Connection | asyncpg.Pool) -> uuid.UUID:
    """This installation's id (table `installation`, one row made by migration 009): it tells this
    installation's CAPI event ids from every other's."""
    found = await conn.fetchval("SELECT id FROM installation")
    if found is None:
        raise MigrationError("the database has no installation id; run `qualibot migrate`")
    return found if isinstance(found, uuid.UUID) else uuid.UUID(str(found))
