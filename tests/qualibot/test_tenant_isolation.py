"""One tenant's `config apply` can never take, change or point at another tenant's objects.

The attack (issue 14): a second tenant's file that reuses the first tenant's ids used to move the
instance, direction, ad account and CRM connections to itself, secrets included, with exit 0.
"""

from __future__ import annotations

import asyncio
import copy
import shutil
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from core.migrate import MIGRATIONS_DIR, discover, migrate
from qualibot.tenants import ConfigError, parse_config
from qualibot.tenants_db import apply_config
from tests.dbsetup import fresh_database
from tests.qualibot.test_config_cli import qualibot, write
from tests.seed import META_TOKEN, WEBHOOK_SECRET, seed, tenant_config

TABLES = ("user_accounts", "ad_accounts", "crm_connections", "account_directions", "whatsapp_instances")
RIVAL_SECRET = "rival-webhook-secret-0123456789"


async def snapshot(db: asyncpg.Pool) -> dict[str, list[dict[str, Any]]]:
    """Every tenant row, without timestamps: what "nothing was written" compares."""
    out = {}
    for table in TABLES:
        rows = await db.fetch(f"SELECT * FROM {table} ORDER BY 1")
        out[table] = [{k: v for k, v in r.items() if k not in ("created_at", "updated_at")} for r in rows]
    return out


def rival_config() -> dict[str, Any]:
    """A second tenant that copies the first one's file and changes only the account and the secrets."""
    cfg = tenant_config()
    acc = cfg["accounts"][0]
    acc.update(id="rival", name="Rival Clinic", access_token="EAAG-rival-user-token")
    acc["ad_accounts"][0]["access_token"] = "EAAH-rival-token"
    acc["whatsapp_instances"][0]["webhook_secret"] = RIVAL_SECRET
    acc["crm_connections"][0]["webhook_secret"] = RIVAL_SECRET
    acc["crm_connections"][1]["application_token"] = RIVAL_SECRET
    return cfg


async def test_a_file_reusing_another_accounts_ids_is_refused_and_writes_nothing(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    await seed(db)
    before = await snapshot(db)
    code, out, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, rival_config())))
    assert code == 2, (out, err)
    for line in (
        "accounts[0].ad_accounts[0].id: ad account 'act_1001' belongs to another account",
        "accounts[0].whatsapp_instances[0].name: instance 'clinic-main' belongs to another account",
        "accounts[0].crm_connections[0].id: CRM connection 'amo-main' belongs to another account",
        "accounts[0].crm_connections[1].id: CRM connection 'b24-main' belongs to another account",
        "accounts[0].directions[0].id: direction 'implants' belongs to another account",
        "nothing was written",
    ):
        assert line in err
    assert "'clinic'" not in err and "Smile" not in err  # the owner is not revealed
    assert await snapshot(db) == before


async def test_the_error_names_the_path_in_a_file_of_several_accounts(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    """The brief's example: the second account of a file names the first tenant's instance."""
    await seed(db)
    before = await snapshot(db)
    own = {"id": "own", "name": "Own"}
    rival = {"id": "rival", "name": "Rival", "whatsapp_instances": [
        {"name": "clinic-main", "api_url": "http://127.0.0.1:9", "api_key": "k", "webhook_secret": RIVAL_SECRET},
    ]}
    code, _, err = await qualibot(
        database_url, "config", "apply", str(write(tmp_path, {"accounts": [own, rival]}))
    )
    assert code == 2
    assert "accounts[1].whatsapp_instances[0].name: instance 'clinic-main' belongs to another account" in err
    assert await snapshot(db) == before


async def test_a_direction_cannot_point_at_another_accounts_ad_account_or_crm(db: asyncpg.Pool) -> None:
    """Listing the other tenant's ad account and CRM connection without secrets, only to reference them."""
    await seed(db)
    before = await snapshot(db)
    cfg = {"accounts": [{
        "id": "rival", "name": "Rival",
        "ad_accounts": [{"id": "act_1001"}],
        "crm_connections": [{"id": "amo-main", "type": "amocrm", "base_url": "http://127.0.0.1:9",
                             "access_token": "t", "account_id": "1", "webhook_secret": RIVAL_SECRET}],
        "directions": [{"id": "rival-dir", "name": "Rival", "ad_account": "act_1001",
                        "capi": {"source": "crm", "crm_connection": "amo-main"}}],
        "whatsapp_instances": [{"name": "rival-main", "api_url": "http://127.0.0.1:9", "api_key": "k",
                                "webhook_secret": RIVAL_SECRET, "default_direction": "rival-dir"}],
    }]}
    with pytest.raises(ConfigError) as refused:
        await apply_config(db, parse_config(cfg))
    assert refused.value.problems == [
        "accounts[0].ad_accounts[0].id: ad account 'act_1001' belongs to another account",
        "accounts[0].crm_connections[0].id: CRM connection 'amo-main' belongs to another account",
    ]
    assert await snapshot(db) == before


async def test_an_instance_default_direction_of_another_account_is_refused(db: asyncpg.Pool) -> None:
    await seed(db)
    before = await snapshot(db)
    cfg = {"accounts": [{
        "id": "rival", "name": "Rival",
        "directions": [{"id": "implants", "name": "Mine now"}],
        "whatsapp_instances": [{"name": "rival-main", "api_url": "http://127.0.0.1:9", "api_key": "k",
                                "webhook_secret": RIVAL_SECRET, "default_direction": "implants"}],
    }]}
    with pytest.raises(ConfigError) as refused:
        await apply_config(db, parse_config(cfg))
    assert refused.value.problems == ["accounts[0].directions[0].id: direction 'implants' belongs to another account"]
    assert await snapshot(db) == before


async def test_the_database_refuses_a_cross_account_reference_written_by_hand(db: asyncpg.Pool) -> None:
    """Migration 011: a direction, instance or CRM reference must stay inside its account, whoever writes."""
    await seed(db)
    await apply_config(db, parse_config({"accounts": [{
        "id": "rival", "name": "Rival", "directions": [{"id": "rival-dir", "name": "R"}],
        "whatsapp_instances": [{"name": "rival-main", "api_url": "http://127.0.0.1:9", "api_key": "k",
                                "webhook_secret": RIVAL_SECRET}],
    }]}))
    for sql in (
        "UPDATE account_directions SET ad_account_id = 'act_1001' WHERE id = 'rival-dir'",
        "UPDATE account_directions SET capi_crm_connection_id = 'amo-main' WHERE id = 'rival-dir'",
        "UPDATE whatsapp_instances SET default_direction_id = 'implants' WHERE name = 'rival-main'",
        "UPDATE ad_accounts SET account_id = 'rival' WHERE id = 'act_1001'",  # its direction stays behind
    ):
        with pytest.raises(asyncpg.ForeignKeyViolationError):
            await db.execute(sql)


async def test_deleting_a_referenced_object_still_clears_only_the_reference(db: asyncpg.Pool) -> None:
    await seed(db)
    await db.execute("DELETE FROM ad_accounts WHERE id = 'act_1001'")
    await db.execute("DELETE FROM account_directions WHERE id = 'implants'")
    assert await db.fetchval("SELECT default_direction_id FROM whatsapp_instances") is None
    assert await db.fetchval("SELECT account_id FROM whatsapp_instances") == "clinic"


async def test_a_database_already_holding_a_cross_account_reference_still_migrates(tmp_path: Path) -> None:
    """Written before the fix: migration 011 keeps the old row (and warns), and refuses new ones."""
    before = tmp_path / "before"
    before.mkdir()
    for m in discover():
        if m.version < 11:
            shutil.copy(MIGRATIONS_DIR / m.name, before / m.name)
    async with fresh_database(tmp_path / "pg") as dsn:
        conn = await asyncpg.connect(dsn)
        try:
            await migrate(conn, before)
            await conn.execute("""
                INSERT INTO user_accounts (id, name) VALUES ('a', 'A'), ('b', 'B');
                INSERT INTO ad_accounts (id, account_id) VALUES ('act_a', 'a');
                INSERT INTO account_directions (id, account_id, name, ad_account_id) VALUES ('d_b', 'b', 'B', 'act_a');
                INSERT INTO account_directions (id, account_id, name) VALUES ('d_b2', 'b', 'B2');""")
            await migrate(conn)
            valid = dict(await conn.fetch(
                "SELECT conname, convalidated FROM pg_constraint WHERE conname LIKE '%same_account'"))
            assert valid == {"account_directions_ad_account_same_account": False,
                             "account_directions_crm_connection_same_account": True,
                             "whatsapp_instances_default_direction_same_account": True}
            with pytest.raises(asyncpg.ForeignKeyViolationError):
                await conn.execute("UPDATE account_directions SET ad_account_id = 'act_a' WHERE id = 'd_b2'")
        finally:
            await conn.close()
        code, out, _ = await qualibot(dsn, "doctor")
        assert code == 1
        assert "ERROR  d_b   references across accounts: this direction and the ad account 'act_a' belong to" in out


@pytest.mark.parametrize("round_", range(4))
async def test_two_applies_at_once_cannot_both_take_a_new_instance(db: asyncpg.Pool, round_: int) -> None:
    """Neither tenant exists yet: the check and the write are one locked step, so exactly one wins."""
    first, second = tenant_config(), rival_config()
    results = await asyncio.gather(
        apply_config(db, parse_config(first)), apply_config(db, parse_config(second)), return_exceptions=True
    )
    errors = [r for r in results if isinstance(r, BaseException)]
    assert len(errors) == 1 and isinstance(errors[0], ConfigError), results
    winner = "clinic" if isinstance(results[1], ConfigError) else "rival"
    owners = await db.fetch(
        "SELECT account_id FROM whatsapp_instances UNION ALL SELECT account_id FROM account_directions "
        "UNION ALL SELECT account_id FROM ad_accounts UNION ALL SELECT account_id FROM crm_connections"
    )
    assert {r["account_id"] for r in owners} == {winner}
    secret = WEBHOOK_SECRET if winner == "clinic" else RIVAL_SECRET
    assert await db.fetchval("SELECT webhook_secret FROM whatsapp_instances") == secret


async def test_the_owner_may_still_change_its_own_objects(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    cfg = await seed(db)
    cfg = copy.deepcopy(cfg)
    cfg["accounts"][0]["ad_accounts"][0]["access_token"] = "EAAH-rotated-token"
    code, out, _ = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 0 and ": 1 row(s) changed" in out
    assert await db.fetchval("SELECT access_token FROM ad_accounts") == "EAAH-rotated-token" != META_TOKEN
