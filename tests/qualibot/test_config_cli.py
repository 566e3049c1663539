"""`qualibot config apply | export`: validation names every error, nothing half-written, idempotent."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

import asyncpg
import pytest
import yaml

from tests.seed import META_TOKEN, tenant_config

ROOT = Path(__file__).resolve().parents[2]


async def qualibot(database_url: str, *args: str) -> tuple[int, str, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", *args, cwd=ROOT,
        env={**os.environ, "DATABASE_URL": database_url},
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await proc.communicate()
    assert proc.returncode is not None
    return proc.returncode, out.decode(), err.decode()


def write(tmp_path: Path, data: Any) -> Path:
    path = tmp_path / "tenants.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True))
    return path


async def counts(db: asyncpg.Pool) -> dict[str, int]:
    tables = ["user_accounts", "ad_accounts", "crm_connections", "account_directions", "whatsapp_instances"]
    return {t: await db.fetchval(f"SELECT count(*) FROM {t}") for t in tables}


async def test_apply_twice_changes_nothing_the_second_time(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, tenant_config())
    code, out, _ = await qualibot(database_url, "config", "apply", str(path))
    assert code == 0 and "row(s) changed" in out
    stamp = await db.fetchval("SELECT max(updated_at) FROM account_directions")
    code, out, _ = await qualibot(database_url, "config", "apply", str(path))
    assert code == 0 and ": 0 row(s) changed" in out
    assert await db.fetchval("SELECT max(updated_at) FROM account_directions") == stamp
    assert await counts(db) == {
        "user_accounts": 1, "ad_accounts": 1, "crm_connections": 2,
        "account_directions": 1, "whatsapp_instances": 1,
    }


async def test_a_config_with_errors_names_every_error_and_writes_nothing(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config()
    acc = cfg["accounts"][0]
    acc["directions"][0]["capi"]["source"] = "telegram"
    acc["directions"][0]["ad_account"] = "act_missing"
    acc["whatsapp_instances"][0]["webhook_secret"] = "short"
    acc["crm_connections"][1].pop("application_token")
    acc["directions"].append({"id": "second", "name": "Second", "capi": {"source": "crm"}})
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    assert "accounts[0].directions[0].capi.source: must be whatsapp or crm" in err
    assert "accounts[0].whatsapp_instances[0].webhook_secret:" in err
    assert "accounts[0].crm_connections[1]: a bitrix24 connection needs application_token" in err
    assert "accounts[0].directions[1].capi: capi.source is crm: capi.crm_connection must name" in err
    assert "nothing was written" in err
    assert sum((await counts(db)).values()) == 0


async def test_cross_reference_errors_are_named(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    cfg = tenant_config()
    cfg["accounts"][0]["directions"][0]["ad_account"] = "act_missing"
    cfg["accounts"][0]["whatsapp_instances"][0]["default_direction"] = "nope"
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    assert "accounts[0].directions[0].ad_account: no ad account 'act_missing' in this account" in err
    assert "accounts[0].whatsapp_instances[0].default_direction: no direction 'nope'" in err
    assert sum((await counts(db)).values()) == 0


async def test_unreadable_and_invalid_yaml_files(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    code, _, err = await qualibot(database_url, "config", "apply", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml" in err
    bad = tmp_path / "bad.yaml"
    bad.write_text("accounts: [unclosed")
    code, _, err = await qualibot(database_url, "config", "apply", str(bad))
    assert code == 2 and "not valid YAML" in err


async def test_export_masks_secrets_and_round_trips(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    path = write(tmp_path, tenant_config())
    assert (await qualibot(database_url, "config", "apply", str(path)))[0] == 0
    code, out, _ = await qualibot(database_url, "config", "export")
    assert code == 0
    assert META_TOKEN not in out and "***" in out
    code, out, _ = await qualibot(database_url, "config", "export", "--show-secrets")
    assert META_TOKEN in out
    # the exported file applies back without changing anything
    exported = tmp_path / "exported.yaml"
    exported.write_text(out)
    code, out, _ = await qualibot(database_url, "config", "apply", str(exported))
    assert code == 0 and ": 0 row(s) changed" in out


async def test_unknown_cli_arguments_exit_2(database_url: str) -> None:
    code, _, err = await qualibot(database_url, "config", "apply")
    assert code == 2 and "usage" in err
    code, _, err = await qualibot(database_url, "frobnicate")
    assert code == 2 and "invalid choice" in err


async def test_a_prompt_left_out_of_the_file_keeps_the_stored_one(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config()
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    await db.execute("UPDATE account_directions SET qualification_prompt = 'generated and saved'")
    del cfg["accounts"][0]["directions"][0]["qualification_prompt"]
    cfg["accounts"][0]["directions"][0]["name"] = "Renamed"
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    row = await db.fetchrow("SELECT name, qualification_prompt FROM account_directions")
    assert row["name"] == "Renamed" and row["qualification_prompt"] == "generated and saved"


SECRET_COLUMNS = {
    "user_accounts": ["access_token"], "ad_accounts": ["access_token"],
    "crm_connections": ["access_token", "webhook_secret", "application_token", "rest_url"],
    "whatsapp_instances": ["api_key", "webhook_secret"],
}


async def stored_secrets(db: asyncpg.Pool) -> list[str | None]:
    return [v for t, cols in SECRET_COLUMNS.items() for col in cols
            for v in [r[0] for r in await db.fetch(f"SELECT {col} FROM {t} ORDER BY 1")]]


async def test_export_masks_every_secret_and_the_bitrix24_webhook_code(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config(bitrix_url="https://clinic.bitrix24.ru/rest/1/q8fk2s9wl3mx7d4v/")
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    code, out, _ = await qualibot(database_url, "config", "export")
    assert code == 0
    for secret in await stored_secrets(db):
        assert secret is None or secret not in out
    assert "q8fk2s9wl3mx7d4v" not in out
    crm = yaml.safe_load(out)["accounts"][0]["crm_connections"][1]
    assert crm["rest_url"] == "https://clinic.bitrix24.ru/rest/1/***/"  # the host stays readable


async def test_a_mask_keeps_the_stored_secret_and_is_never_stored(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, tenant_config()))))[0] == 0
    before = await stored_secrets(db)
    _, out, _ = await qualibot(database_url, "config", "export")
    exported = yaml.safe_load(out)
    exported["accounts"][0]["name"] = "Smile Clinic (renamed)"
    code, out, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, exported)))
    assert code == 0 and ": 1 row(s) changed" in out, err
    assert await stored_secrets(db) == before
    assert not any("***" in (s or "") for s in await stored_secrets(db))


async def test_a_mask_with_no_stored_secret_is_an_error_naming_the_path(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config()
    acc = cfg["accounts"][0]
    acc["access_token"] = "***"
    acc["whatsapp_instances"][0]["webhook_secret"] = "***"
    acc["crm_connections"][1]["rest_url"] = "https://clinic.bitrix24.ru/rest/1/***/"
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    assert "accounts[0].access_token: *** means keep the stored secret, but none is stored" in err
    assert "accounts[0].whatsapp_instances[0].webhook_secret: *** means keep the stored secret" in err
    assert "accounts[0].crm_connections[1].rest_url: *** means keep the stored secret" in err
    assert sum((await counts(db)).values()) == 0


async def test_a_masked_rest_url_for_another_portal_is_refused(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config(bitrix_url="https://clinic.bitrix24.ru/rest/1/q8fk2s9wl3mx7d4v/")
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    cfg["accounts"][0]["crm_connections"][1]["rest_url"] = "https://other.bitrix24.ru/rest/1/***/"
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    assert "accounts[0].crm_connections[1].rest_url: the masked URL is not the stored one's" in err
    assert await db.fetchval("SELECT rest_url FROM crm_connections WHERE id = 'b24-main'") == (
        "https://clinic.bitrix24.ru/rest/1/q8fk2s9wl3mx7d4v/"
    )


async def test_crm_webhook_secrets_need_16_characters(db: asyncpg.Pool, database_url: str, tmp_path: Path) -> None:
    cfg = tenant_config()
    cfg["accounts"][0]["crm_connections"][0]["webhook_secret"] = "short-secret"
    cfg["accounts"][0]["crm_connections"][1]["application_token"] = "abc123"
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    assert "accounts[0].crm_connections[0].webhook_secret: must be at least 16 characters" in err
    assert "accounts[0].crm_connections[1].application_token: must be at least 16 characters" in err
    assert sum((await counts(db)).values()) == 0


async def test_min_confidence_is_validated_stored_and_exported(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = tenant_config()
    cfg["accounts"][0]["directions"][0]["min_confidence"] = 1.5
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2 and "min_confidence" in err and not any((await counts(db)).values())  # nothing written
    cfg["accounts"][0]["directions"][0]["min_confidence"] = 0.7
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    direction = cfg["accounts"][0]["directions"][0]["id"]
    stored = await db.fetchval("SELECT min_confidence FROM account_directions WHERE id = $1", direction)
    assert stored == pytest.approx(0.7)
    code, out, _ = await qualibot(database_url, "config", "export")
    exported = yaml.safe_load(out)["accounts"][0]["directions"]
    assert next(d for d in exported if d["id"] == direction)["min_confidence"] == 0.7
