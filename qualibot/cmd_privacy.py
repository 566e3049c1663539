"""`qualibot privacy erase | export --phone P [--account A]`: one person's data (LGPD, GDPR).

- `export` prints, as JSON, everything stored about the person (subject access): leads, dialogs,
  messages, the CAPI audit rows and the CRM webhook records that hold their phone.
- `erase` removes the person's messages, phone, name and email everywhere, keeps the audit rows
  with their personal fields nulled, and records the erasure (who, when, how many rows per table)
  in `privacy_erasures`, all in one transaction. Exit 0 also when nothing was stored.

The phone is read as a person types it (`+55 31 98888-7777`, `8 916 123-45-67`): a local number
with each account's `default_region`. Without `--account`, every account is searched. Each table's
SQL lives in the package that owns it (`bot.privacy`, `capi.privacy`, `crm.privacy`); this module
only orchestrates and owns `privacy_erasures`.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any

import asyncpg

import bot.privacy
import capi.privacy
import crm.privacy
from capi import tenants
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.logging import get_logger, mask_phone
from core.phones import normalize_phone
from core.settings import Settings
from qualibot.cli import CliError

log = get_logger("qualibot.privacy")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("privacy")
    psub = p.add_subparsers(dest="privacy_command", required=True, metavar="ACTION")
    for name, text in (("export", "print what is stored about a person, as JSON"),
                       ("erase", "remove a person's messages, phone, name and email everywhere")):
        q = psub.add_parser(name, help=text)
        q.add_argument("--phone", required=True, help="the person's phone, as they would type it")
        q.add_argument("--account", metavar="ID", help="only this account (default: every account)")
        if name == "erase":
            q.add_argument("--by", metavar="WHO", help="who asked for it, for the record (default: the OS user)")
        q.set_defaults(func=run_export if name == "export" else run_erase)


@dataclass(frozen=True)
class Person:
    targets: list[tuple[str, str]]  # (account id, phone digits)

    @property
    def accounts(self) -> list[str]:
        return [a for a, _ in self.targets]

    @property
    def phones(self) -> list[str]:
        return sorted({p for _, p in self.targets})


async def resolve(db: asyncpg.Pool | asyncpg.Connection, phone: str, account: str | None) -> Person:
    """The phone read with each account's region; exit 2 naming the field when it is not one."""
    rows = await tenants.account_regions(db, account)
    if account is not None and not rows:
        raise CliError(f"--account: no account {account!r}", code=2)
    targets = [(account_id, digits) for account_id, region in rows if (digits := normalize_phone(phone, region))]
    if not targets and (rows or normalize_phone(phone) is None):
        raise CliError(f"--phone: {phone!r} is not a phone number", code=2)
    return Person(targets)


@dataclass(frozen=True)
class Stored:
    """Where the person is: their WhatsApp rows, their CAPI audit rows, the CRM entities behind those."""

    found: bot.privacy.Found
    capi_rows: list[dict[str, Any]]
    crm_entities: list[str]


async def locate(db: asyncpg.Connection, person: Person) -> Stored:
    found = await bot.privacy.find_person(db, person.targets)
    rows = await capi.privacy.person_rows(db, dialog_ids=found.dialog_ids, accounts=person.accounts,
                                          phones=person.phones, emails=found.emails)
    return Stored(found, rows, capi.privacy.crm_entities(rows))


async def collect(db: asyncpg.Connection, person: Person) -> dict[str, Any]:
    at = await locate(db, person)
    events = await crm.privacy.person_events(db, accounts=person.accounts, phones=person.phones,
                                             entities=at.crm_entities)
    return {**await bot.privacy.export_person(db, person.targets, at.found),
            "capi_events_log": at.capi_rows, "webhook_events": events}


async def run_export(args: argparse.Namespace, settings: Settings) -> int:
    try:
        async with open_pool(settings, max_size=1) as pool, pool.acquire() as conn:
            person = await resolve(conn, args.phone, args.account)
            async with conn.transaction(isolation="repeatable_read", readonly=True):
                stored = await collect(conn, person)
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    out = {"phone": person.phones, "accounts": sorted(set(person.accounts)), **stored}
    json.dump(out, sys.stdout, ensure_ascii=False, indent=2, default=_plain)
    sys.stdout.write("\n")
    return 0


async def run_erase(args: argparse.Namespace, settings: Settings) -> int:
    by = args.by or getpass.getuser()
    try:
        async with open_pool(settings, max_size=1) as pool, pool.acquire() as conn:
            person = await resolve(conn, args.phone, args.account)
            async with conn.transaction():
                counts = await erase(conn, person)
                erasure_id = await conn.fetchval(
                    """INSERT INTO privacy_erasures (account_id, phone_masked, requested_by, rows)
                       VALUES ($1, $2, $3, $4) RETURNING id""",
                    args.account, ", ".join(mask_phone(p) for p in person.phones) or "-", by, counts,
                )
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None
    log.info("privacy.erased", erasure_id=erasure_id, by=by, account=args.account, rows=counts)
    total = sum(counts.values())
    summary = ", ".join(f"{table}: {n}" for table, n in counts.items())
    print(f"erasure {erasure_id} by {by}: {summary}" + ("" if total else " (nothing was stored for this phone)"))
    return 0


async def erase(conn: asyncpg.Connection, person: Person) -> dict[str, int]:
    """Every owner erases its part; rows changed per table. Inside the caller's transaction."""
    at = await locate(conn, person)
    crm_rows = await crm.privacy.erase_person(conn, accounts=person.accounts, phones=person.phones,
                                              entities=at.crm_entities)
    capi_rows = await capi.privacy.erase_person(conn, at.capi_rows)
    return {**await bot.privacy.erase_person(conn, person.targets, at.found),
            "capi_events_log": capi_rows, "webhook_events": crm_rows}


def _plain(value: Any) -> Any:
    if isinstance(value, datetime | date):
        return value.isoformat()
    return str(value)
