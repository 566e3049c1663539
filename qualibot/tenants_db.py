"""Writing a validated tenant config to the database, and reading it back for export."""

from __future__ import annotations

from typing import Any

import asyncpg

from qualibot.tenants import TenantConfig

# prompts may be written by `qualibot prompt generate --save`; a file that leaves them out keeps them
_PROMPTS = frozenset({"bot_prompt", "qualification_prompt"})
SECRET_FIELDS = {"access_token", "api_key", "webhook_secret", "application_token"}
MASK = "***"


async def _upsert(
    conn: asyncpg.Connection, table: str, key: str, row: dict[str, Any], keep: frozenset[str] = frozenset()
) -> bool:
    """Insert or update `row`; a row that already matches is not touched. Columns in `keep` are
    written on insert only (the file left them out, so what is stored stays). True if written."""
    cols = list(row)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(cols)))
    changing = [c for c in cols if c != key and c not in keep]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
    differs = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in changing)
    status = await conn.execute(
        f"""INSERT INTO {table} ({", ".join(cols)}) VALUES ({placeholders})
            ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now() WHERE {differs}""",
        *row.values(),
    )
    return not status.endswith(" 0")


async def apply_config(pool: asyncpg.Pool, cfg: TenantConfig) -> int:
    """Write everything in `cfg` in one transaction; returns the number of rows changed."""
    changed = 0
    async with pool.acquire() as conn, conn.transaction():
        for acc in cfg.accounts:
            changed += await _upsert(conn, "user_accounts", "id", {
                "id": acc.id, "name": acc.name, "default_region": acc.default_region,
                "access_token": acc.access_token,
            })
            for ad in acc.ad_accounts:
                changed += await _upsert(conn, "ad_accounts", "id", {
                    "id": ad.id, "account_id": acc.id, "access_token": ad.access_token,
                })
            for crm in acc.crm_connections:
                changed += await _upsert(conn, "crm_connections", "id", {
                    "id": crm.id, "account_id": acc.id, "type": crm.type, "base_url": crm.base_url,
                    "rest_url": crm.rest_url, "access_token": crm.access_token,
                    "crm_account_id": crm.account_id, "subdomain": crm.subdomain,
                    "webhook_secret": crm.webhook_secret, "application_token": crm.application_token,
                    "rate_limit_per_second": crm.rate_limit_per_second,
                })
            crm_types = {c.id: c.type for c in acc.crm_connections}
            for d in acc.directions:
                c = d.capi
                changed += await _upsert(conn, "account_directions", "id", {
                    "id": d.id, "account_id": acc.id, "name": d.name, "ad_account_id": d.ad_account,
                    "pixel_id": d.pixel_id, "whatsapp_business_account_id": d.whatsapp_business_account_id,
                    "ad_ids": d.ad_ids, "bot_prompt": d.bot_prompt,
                    "qualification_prompt": d.qualification_prompt, "reply_to": d.reply_to,
                    "analyse_dialogs": d.analyse, "capi_enabled": c.enabled,
                    "capi_source": c.source,
                    "capi_crm_type": crm_types.get(c.crm_connection or ""),
                    "capi_crm_connection_id": c.crm_connection, "capi_test_event_code": c.test_event_code,
                    "capi_event_names": {str(k): v for k, v in sorted(c.event_names.items())},
                    "capi_event_values": {
                        str(k): v.model_dump() for k, v in sorted(c.event_values.items())
                    },
                    "capi_interest_fields": [f.model_dump(exclude_none=True) for f in c.interest_fields],
                    "capi_qualified_fields": [f.model_dump(exclude_none=True) for f in c.qualified_fields],
                    "capi_scheduled_fields": [f.model_dump(exclude_none=True) for f in c.scheduled_fields],
                }, keep=_PROMPTS - d.model_fields_set)
            for inst in acc.whatsapp_instances:
                changed += await _upsert(conn, "whatsapp_instances", "name", {
                    "name": inst.name, "account_id": acc.id, "api_url": inst.api_url,
                    "api_key": inst.api_key, "webhook_secret": inst.webhook_secret,
                    "default_direction_id": inst.default_direction,
                })
    return changed


def _clean(d: dict[str, Any], show_secrets: bool) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if v is None or v == [] or v == {}:
            continue
        out[k] = MASK if (k in SECRET_FIELDS and not show_secrets) else v
    return out


async def export_config(pool: asyncpg.Pool, *, show_secrets: bool = False) -> dict[str, Any]:
    """The database's tenants in the config file's shape (secrets masked unless asked)."""
    async with pool.acquire() as conn:
        accounts = await conn.fetch("SELECT * FROM user_accounts ORDER BY id")
        ads = await conn.fetch("SELECT * FROM ad_accounts ORDER BY id")
        crms = await conn.fetch("SELECT * FROM crm_connections ORDER BY id")
        dirs = await conn.fetch("SELECT * FROM account_directions ORDER BY id")
        insts = await conn.fetch("SELECT * FROM whatsapp_instances ORDER BY name")
    result = []
    for a in accounts:
        acc = _clean({
            "id": a["id"], "name": a["name"], "default_region": a["default_region"],
            "access_token": a["access_token"],
        }, show_secrets)
        acc["ad_accounts"] = [
            _clean({"id": r["id"], "access_token": r["access_token"]}, show_secrets)
            for r in ads if r["account_id"] == a["id"]
        ]
        acc["whatsapp_instances"] = [
            _clean({
                "name": r["name"], "api_url": r["api_url"], "api_key": r["api_key"],
                "webhook_secret": r["webhook_secret"], "default_direction": r["default_direction_id"],
            }, show_secrets)
            for r in insts if r["account_id"] == a["id"]
        ]
        acc["crm_connections"] = [
            _clean({
                "id": r["id"], "type": r["type"], "base_url": r["base_url"], "rest_url": r["rest_url"],
                "access_token": r["access_token"], "account_id": r["crm_account_id"],
                "subdomain": r["subdomain"], "webhook_secret": r["webhook_secret"],
                "application_token": r["application_token"],
                "rate_limit_per_second": r["rate_limit_per_second"],
            }, show_secrets)
            for r in crms if r["account_id"] == a["id"]
        ]
        acc["directions"] = [_direction(r, show_secrets) for r in dirs if r["account_id"] == a["id"]]
        result.append({k: v for k, v in acc.items() if v != []})
    return {"accounts": result}


def _direction(r: asyncpg.Record, show_secrets: bool) -> dict[str, Any]:
    capi = _clean({
        "enabled": r["capi_enabled"], "source": r["capi_source"],
        "crm_connection": r["capi_crm_connection_id"], "test_event_code": r["capi_test_event_code"],
        "event_names": {int(k): v for k, v in r["capi_event_names"].items()},
        "event_values": {int(k): v for k, v in r["capi_event_values"].items()},
        "interest_fields": r["capi_interest_fields"], "qualified_fields": r["capi_qualified_fields"],
        "scheduled_fields": r["capi_scheduled_fields"],
    }, show_secrets)
    d = _clean({
        "id": r["id"], "name": r["name"], "ad_account": r["ad_account_id"], "pixel_id": r["pixel_id"],
        "whatsapp_business_account_id": r["whatsapp_business_account_id"], "ad_ids": list(r["ad_ids"]),
        "bot_prompt": r["bot_prompt"], "qualification_prompt": r["qualification_prompt"],
        "reply_to": r["reply_to"], "analyse": r["analyse_dialogs"],
    }, show_secrets)
    d["capi"] = capi
    return d
