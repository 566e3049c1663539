"""Numbered SQL migrations: applied in order, once, under an advisory lock, checksummed.

Files live in the `migrations` package beside the others (`NNN_name.sql`), shipped as package data
and read with importlib.resources, so an installed wheel migrates too. Each file is applied in its
own transaction together with its row in `schema_migrations`, so a failure leaves nothing
half-applied. Concurrent `qualibot migrate` runs serialise on the advisory lock; the second finds
nothing to do. Refused: an applied file whose text changed (the database would no longer match the
code), and a new file numbered below the last applied one (databases that applied the files in
different orders would differ).

A file whose first line is `-- qualibot: no-transaction` runs outside a transaction, one statement
at a time, for what PostgreSQL refuses inside one (`CREATE INDEX CONCURRENTLY`). Its statements are
split at semicolons that end a line, so keep it to plain statements; write them so a rerun after a
failure part-way succeeds (`IF NOT EXISTS`; drop an INVALID index a failed concurrent build left).
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import uuid
from dataclasses import dataclass
from importlib.resources import files
from importlib.resources.abc import Traversable

import asyncpg

from core.errors import Permanent
from core.logging import get_logger

log = get_logger("core.migrate")

MIGRATIONS_DIR: Traversable = files("migrations")
_LOCK_KEY = 0x7175616C69626F74  # "qualibot"; one lock id for every qualibot database
_NAME = re.compile(r"^(\d{3,})_[a-z0-9_]+\.sql$")
NO_TRANSACTION = "-- qualibot: no-transaction"
_STATEMENT_END = re.compile(r";[ \t]*(?:--[^\n]*)?$", re.MULTILINE)


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

    @property
    def in_transaction(self) -> bool:
        return self.sql.split("\n", 1)[0].strip() != NO_TRANSACTION

    def statements(self) -> list[str]:
        """The file's statements, for a no-transaction migration (run one by one: PostgreSQL runs a
        multi-statement string as one implicit transaction)."""
        parts = (p.strip() for p in _STATEMENT_END.split(self.sql))
        return [p for p in parts if p and any(not line.strip().startswith("--") for line in p.splitlines())]


def discover(directory: Traversable = MIGRATIONS_DIR) -> list[Migration]:
    found: list[Migration] = []
    for path in sorted((p for p in directory.iterdir() if p.name.endswith(".sql")), key=lambda p: p.name):
        match = _NAME.match(path.name)
        if not match:
            raise MigrationError(f"{path.name}: migration files are named NNN_lowercase_name.sql")
        found.append(Migration(int(match.group(1)), path.name, path.read_text(encoding="utf-8")))
    versions = [m.version for m in found]
    if len(set(versions)) != len(versions):
        raise MigrationError("two migration files share a number")
    return sorted(found, key=lambda m: m.version)


async def migrate(conn: asyncpg.Connection, directory: Traversable = MIGRATIONS_DIR) -> list[str]:
    """Apply pending migrations; returns the names applied by this call."""
    migrations = discover(directory)
    applied_now: list[str] = []
    await _lock(conn)
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
        last = max(applied, default=0)
        late = [m for m in migrations if m.version not in applied and m.version < last]
        if late:
            raise MigrationError(
                f"{late[0].name} is numbered below {applied[last]['name']}, the last applied migration; "
                f"renumber it above {last:03d} (a database that applied it earlier would differ from this one)"
            )
        for m in migrations:
            if m.version in applied:
                continue
            try:
                await _apply(conn, m)
            except asyncpg.LockNotAvailableError:  # the migration's own lock_timeout: it would stall writers
                raise MigrationError(
                    f"{m.name} waited too long for a table lock another session holds (a long query or an open "
                    f"transaction), so it stopped rather than hold up the service's writes; "
                    f"{'nothing of it was applied' if m.in_transaction else 'its statements can run again'}"
                    f"{' (applied before it: ' + ', '.join(applied_now) + ')' if applied_now else ''}. "
                    "Run `qualibot migrate` again"
                ) from None
            log.info("migrate.applied", migration=m.name)
            applied_now.append(m.name)
    finally:
        await conn.execute("SELECT pg_advisory_unlock($1)", _LOCK_KEY)
    return applied_now


async def _apply(conn: asyncpg.Connection, m: Migration) -> None:
    if m.in_transaction:
        async with conn.transaction():
            await conn.execute(m.sql)
            await _record(conn, m)
    else:
        for statement in m.statements():
            await conn.execute(statement)
        await _record(conn, m)


_LOCK_POLL_SECONDS = 0.2


async def _lock(conn: asyncpg.Connection) -> None:
    """The migrations lock, tried between pauses rather than waited for in one statement: a process
    blocked in pg_advisory_lock is a transaction in progress, and the holder's CREATE INDEX
    CONCURRENTLY waits for every such transaction to end, a deadlock."""
    while True:
        if await conn.fetchval("SELECT pg_try_advisory_lock($1)", _LOCK_KEY):
            return
        await asyncio.sleep(_LOCK_POLL_SECONDS)  # another process migrates; nothing to be woken by


async def _record(conn: asyncpg.Connection, m: Migration) -> None:
    await conn.execute("INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                       m.version, m.name, m.checksum)


async def check_current(conn: asyncpg.Connection, directory: Traversable = MIGRATIONS_DIR) -> None:
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
