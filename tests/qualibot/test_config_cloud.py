"""`whatsapp_cloud_numbers` in the tenant config: the same validation, masking and tenant isolation
as the other objects, and a direction's WABA id taken from its number."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import asyncpg
import yaml

from tests.fakes.cloud_webhook import APP_SECRET, CLOUD_TOKEN, NUMBER_ID, VERIFY_TOKEN, WABA, with_cloud_number
from tests.qualibot.test_config_cli import qualibot, write
from tests.seed import WABA_ID, seed, tenant_config


async def cloud_rows(db: asyncpg.Pool) -> list[dict[str, Any]]:
    rows = await db.fetch("""SELECT c.*, i.channel, i.default_direction_id, i.api_url FROM whatsapp_cloud_numbers c
                             JOIN whatsapp_instances i ON i.name = c.instance_name ORDER BY 1""")
    return [{k: v for k, v in r.items() if k not in ("created_at", "updated_at")} for r in rows]


async def test_a_cloud_number_is_applied_once_and_exported_masked(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, with_cloud_number(tenant_config()))
    code, out, err = await qualibot(database_url, "config", "apply", str(path))
    assert code == 0, err
    code, out, _ = await qualibot(database_url, "config", "apply", str(path))
    assert (code, out.strip().endswith(": 0 row(s) changed")) == (0, True)
    [row] = await cloud_rows(db)
    assert (row["instance_name"], row["channel"], row["api_url"]) == (f"cloud-{NUMBER_ID}", "cloud", None)
    assert (row["waba_id"], row["default_direction_id"]) == (WABA, "implants")
    code, exported, _ = await qualibot(database_url, "config", "export")
    [number] = yaml.safe_load(exported)["accounts"][0]["whatsapp_cloud_numbers"]
    assert number == {"phone_number_id": NUMBER_ID, "waba_id": WABA, "access_token": "***", "app_secret": "***",
                      "verify_token": "***", "default_direction": "implants"}
    for secret in (CLOUD_TOKEN, APP_SECRET, VERIFY_TOKEN):
        assert secret not in exported
    assert "cloud-" not in str(yaml.safe_load(exported)["accounts"][0]["whatsapp_instances"])
    (tmp_path / "exported.yaml").write_text(exported)  # the export applies back unchanged
    code, out, _ = await qualibot(database_url, "config", "apply", str(tmp_path / "exported.yaml"))
    assert (code, out.strip().endswith(": 0 row(s) changed")) == (0, True)
    assert (await cloud_rows(db))[0]["app_secret"] == APP_SECRET


async def test_invalid_cloud_numbers_name_each_field_and_write_nothing(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = with_cloud_number(tenant_config())
    number = cfg["accounts"][0]["whatsapp_cloud_numbers"][0]
    number.update(phone_number_id="12-34", app_secret="short", verify_token="tiny", default_direction="nowhere")
    del number["waba_id"]
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2
    for field in ("phone_number_id", "waba_id", "app_secret", "verify_token"):
        assert f"accounts[0].whatsapp_cloud_numbers[0].{field}:" in err, (field, err)
    assert "nothing was written" in err
    assert await db.fetchval("SELECT count(*) FROM whatsapp_instances") == 0
    cfg = with_cloud_number(tenant_config())
    cfg["accounts"][0]["whatsapp_cloud_numbers"][0]["default_direction"] = "nowhere"
    code, _, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg)))
    assert code == 2 and "accounts[0].whatsapp_cloud_numbers[0].default_direction: no direction 'nowhere'" in err


async def test_a_second_tenant_reusing_a_phone_number_id_is_refused_and_writes_nothing(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    await seed(db, with_cloud_number(tenant_config()))
    before = await cloud_rows(db)
    rival = {"accounts": [{"id": "rival", "name": "Rival", "whatsapp_cloud_numbers": [{
        "phone_number_id": NUMBER_ID, "waba_id": "555", "access_token": "EAAJ-rival-token",
        "app_secret": "rival-app-secret-0000000000", "verify_token": "rival-verify-token-000000",
    }]}]}
    code, out, err = await qualibot(database_url, "config", "apply", str(write(tmp_path, rival)))
    assert code == 2, (out, err)
    assert (f"accounts[0].whatsapp_cloud_numbers[0].phone_number_id: WhatsApp Cloud number {NUMBER_ID!r} "
            "belongs to another account") in err
    assert "nothing was written" in err and "'clinic'" not in err
    assert await cloud_rows(db) == before
    assert await db.fetchval("SELECT count(*) FROM user_accounts WHERE id = 'rival'") == 0


async def test_a_direction_without_a_waba_id_takes_its_numbers(
    db: asyncpg.Pool, database_url: str, tmp_path: Path
) -> None:
    cfg = with_cloud_number(tenant_config())
    del cfg["accounts"][0]["directions"][0]["whatsapp_business_account_id"]
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    assert await db.fetchval("SELECT whatsapp_business_account_id FROM account_directions") == WABA
    cfg = with_cloud_number(tenant_config())  # a direction's own id is kept
    assert (await qualibot(database_url, "config", "apply", str(write(tmp_path, cfg))))[0] == 0
    assert await db.fetchval("SELECT whatsapp_business_account_id FROM account_directions") == WABA_ID
