"""Writing a validated tenant config to the database, each object kept inside its account, and reading it back
for export (secrets masked)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import asyncpg

from bot.cloud.numbers import instance_name as cloud_instance_name
from qualibot.tenants import MASK, Account, ConfigError, TenantConfig, is_masked, mask_rest_url, rest_url_code

# prompts may be written by `qualibot prompt generate --save`; a file that leaves them out keeps them
_PROMPTS = frozenset({"bot_prompt", "qualification_prompt"})
# every `config apply` takes this transaction lock first: a check of who owns an id and the write
# that relies on it are one step, even for ids that no row holds yet (FOR UPDATE cannot lock those)
_APPLY_LOCK = 0x7175616C69636667  # "qualicfg"


@dataclass(frozen=True)
class _Kind:
    """One table `config apply` writes: where its objects sit in the file, and what is secret in them.

    Every kind but the account itself belongs to one account (`account_id`): the isolation check,
    the mask check and the secret registry all read this table, so a new kind is one entry."""

    table: str
    key: str  # primary key column, named in the file by the same field
    noun: str  # how errors name one object
    field: str | None  # the account's list in the file; None for the account itself
    secrets: tuple[str, ...]  # columns holding secrets: masked on export, registered for redaction
    rows: Callable[[Account], list[dict[str, Any]]]  # one row per object, in file order
    file_key: str | None = None  # the file's field that gives `key`, when it is not named `key`

    def path(self, ai: int, i: int) -> str:
        return f"accounts[{ai}]" + (f".{self.field}[{i}]" if self.field else "")


def _account_rows(acc: Account) -> list[dict[str, Any]]:
    return [{"id": acc.id, "name": acc.name, "default_region": acc.default_region, "access_token": acc.access_token}]


def _ad_account_rows(acc: Account) -> list[dict[str, Any]]:
    return [{"id": ad.id, "account_id": acc.id, "access_token": ad.access_token} for ad in acc.ad_accounts]


def _crm_rows(acc: Account) -> list[dict[str, Any]]:
    return [{
        "id": crm.id, "account_id": acc.id, "type": crm.type, "base_url": crm.base_url,
        "rest_url": crm.rest_url, "access_token": crm.access_token,
        "crm_account_id": crm.account_id, "subdomain": crm.subdomain,
        "webhook_secret": crm.webhook_secret, "application_token": crm.application_token,
        "rate_limit_per_second": crm.rate_limit_per_second,
    } for crm in acc.crm_connections]


def _direction_rows(acc: Account) -> list[dict[str, Any]]:
    crm_types = {c.id: c.type for c in acc.crm_connections}
    rows = []
    for d in acc.directions:
        c = d.capi
        row = {
            "id": d.id, "account_id": acc.id, "name": d.name, "ad_account_id": d.ad_account,
            "pixel_id": d.pixel_id, "whatsapp_business_account_id": d.whatsapp_business_account_id,
            "ad_ids": d.ad_ids, "bot_prompt": d.bot_prompt,
            "qualification_prompt": d.qualification_prompt, "reply_to": d.reply_to,
            "analyse_dialogs": d.analyse, "min_confidence": d.min_confidence, "capi_enabled": c.enabled,
            "capi_source": c.source,
            "capi_crm_type": crm_types.get(c.crm_connection or ""),
            "capi_crm_connection_id": c.crm_connection, "capi_test_event_code": c.test_event_code,
            "capi_event_names": {str(k): v for k, v in sorted(c.event_names.items())},
            "capi_allow_unlisted_event_names": c.allow_unlisted_event_names,
            "capi_event_values": {
                str(k): v.model_dump() for k, v in sorted(c.event_values.items())
            },
            "capi_interest_fields": [f.model_dump(exclude_none=True) for f in c.interest_fields],
            "capi_qualified_fields": [f.model_dump(exclude_none=True) for f in c.qualified_fields],
            "capi_scheduled_fields": [f.model_dump(exclude_none=True) for f in c.scheduled_fields],
        }
        rows.append({k: v for k, v in row.items() if k not in _PROMPTS - d.model_fields_set})
    return rows


def _instance_rows(acc: Account) -> list[dict[str, Any]]:
    return [{
        "name": inst.name, "account_id": acc.id, "api_url": inst.api_url,
        "api_key": inst.api_key, "webhook_secret": inst.webhook_secret,
        "default_direction_id": inst.default_direction, "channel": "evolution",
    } for inst in acc.whatsapp_instances]


def _cloud_instance_rows(acc: Account) -> list[dict[str, Any]]:
    """A Cloud number's `whatsapp_instances` row: how intake, drain and dialogs know the number."""
    return [{
        "name": cloud_instance_name(n.phone_number_id), "account_id": acc.id, "api_url": None, "api_key": None,
        "webhook_secret": None, "default_direction_id": n.default_direction, "channel": "cloud",
    } for n in acc.whatsapp_cloud_numbers]


def _cloud_number_rows(acc: Account) -> list[dict[str, Any]]:
    return [{
        "phone_number_id": n.phone_number_id, "account_id": acc.id,
        "instance_name": cloud_instance_name(n.phone_number_id), "waba_id": n.waba_id,
        "access_token": n.access_token, "app_secret": n.app_secret, "verify_token": n.verify_token,
    } for n in acc.whatsapp_cloud_numbers]


# in write order: an object is written after everything it references
KINDS: tuple[_Kind, ...] = (
    _Kind("user_accounts", "id", "account", None, ("access_token",), _account_rows),
    _Kind("ad_accounts", "id", "ad account", "ad_accounts", ("access_token",), _ad_account_rows),
    _Kind("crm_connections", "id", "CRM connection", "crm_connections",
          ("rest_url", "access_token", "webhook_secret", "application_token"), _crm_rows),
    _Kind("account_directions", "id", "direction", "directions", (), _direction_rows),
    _Kind("whatsapp_instances", "name", "instance", "whatsapp_instances", ("api_key", "webhook_secret"),
          _instance_rows),
    _Kind("whatsapp_instances", "name", "instance", "whatsapp_cloud_numbers", (), _cloud_instance_rows,
          file_key="phone_number_id"),
    _Kind("whatsapp_cloud_numbers", "phone_number_id", "WhatsApp Cloud number", "whatsapp_cloud_numbers",
          ("access_token", "app_secret", "verify_token"), _cloud_number_rows),
)
SECRET_FIELDS = frozenset(col for kind in KINDS for col in kind.secrets)


async def _upsert(conn: asyncpg.Connection, kind: _Kind, row: dict[str, Any]) -> bool:
    """Insert or update `row`; a row that already matches is not touched, and a row of another
    account never is (`_check` refused that already; this holds whoever calls). True if written."""
    table, key = kind.table, kind.key
    cols = list(row)
    placeholders = ", ".join(f"${i + 1}" for i in range(len(cols)))
    changing = [c for c in cols if c != key]
    updates = ", ".join(f"{c} = EXCLUDED.{c}" for c in changing)
    differs = " OR ".join(f"{table}.{c} IS DISTINCT FROM EXCLUDED.{c}" for c in changing)
    same_owner = f"{table}.account_id = EXCLUDED.account_id AND " if kind.field else ""
    status = await conn.execute(
        f"""INSERT INTO {table} ({", ".join(cols)}) VALUES ({placeholders})
            ON CONFLICT ({key}) DO UPDATE SET {updates}, updated_at = now() WHERE {same_owner}({differs})""",
        *row.values(),
    )
    return not status.endswith(" 0")


async def _check(
    conn: asyncpg.Connection, kind: _Kind, planned: list[tuple[str, str, dict[str, Any]]]
) -> list[str]:
    """Refuse objects of another account; replace a mask by the stored secret it stands for, or
    refuse it when nothing is stored. Locks the stored rows until the transaction ends."""
    problems: list[str] = []
    columns = ", ".join((kind.key, "account_id" if kind.field else f"{kind.key} AS account_id", *kind.secrets))
    stored = {r[kind.key]: r for r in await conn.fetch(
        f"SELECT {columns} FROM {kind.table} WHERE {kind.key} = ANY($1::text[]) FOR UPDATE",
        [row[kind.key] for _, _, row in planned],
    )}
    for path, account, row in planned:
        have = stored.get(row[kind.key])
        if have is not None and have["account_id"] != account:
            problems.append(f"{path}.{kind.file_key or kind.key}: {kind.noun} {row[kind.key]!r} "
                            "belongs to another account")
            continue
        for col in kind.secrets:
            if not is_masked(col, row.get(col)):
                continue
            kept = have[col] if have is not None else None
            if kept is None:
                problems.append(f"{path}.{col}: {MASK} means keep the stored secret, but none is stored")
            elif col == "rest_url" and mask_rest_url(kept) != row[col]:
                problems.append(f"{path}.{col}: the masked URL is not the stored one's; write the whole URL")
            row[col] = kept  # the stored value itself: unchanged, and the mask never reaches the table
    return problems


async def apply_config(pool: asyncpg.Pool, cfg: TenantConfig) -> int:
    """Write everything in `cfg` in one transaction; returns the number of rows changed.
    Raises ConfigError (and writes nothing) when the file names another account's object or
    keeps a secret (MASK) that is not stored."""
    planned = {kind: [(kind.path(ai, i), acc.id, row) for ai, acc in enumerate(cfg.accounts)
                      for i, row in enumerate(kind.rows(acc))] for kind in KINDS}
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _APPLY_LOCK)
        problems = [p for kind in KINDS for p in await _check(conn, kind, planned[kind])]
        if problems:
            raise ConfigError(problems)
        changed = 0
        for kind in KINDS:
            for _, _, row in planned[kind]:
                changed += await _upsert(conn, kind, row)
    return changed


async def secret_values(pool: asyncpg.Pool) -> list[str]:
    """Every stored secret (a Bitrix24 `rest_url` gives its webhook code), for `core.secrets`."""
    selects = [f"SELECT '{col}', {col} FROM {kind.table} WHERE {col} IS NOT NULL"
               for kind in KINDS for col in kind.secrets]
    rows = await pool.fetch(" UNION ALL ".join(selects))
    return [(rest_url_code(value) or "") if col == "rest_url" else value for col, value in rows]


def _clean(d: dict[str, Any], show_secrets: bool) -> dict[str, Any]:
    out = {}
    for k, v in d.items():
        if v is None or v == [] or v == {}:
            continue
        if show_secrets or k not in SECRET_FIELDS:
            out[k] = v
        else:
            out[k] = mask_rest_url(v) if k == "rest_url" else MASK
    return out


async def export_config(pool: asyncpg.Pool, *, show_secrets: bool = False) -> dict[str, Any]:
    """The database's tenants in the config file's shape (secrets masked unless asked)."""
    async with pool.acquire() as conn:
        accounts = await conn.fetch("SELECT * FROM user_accounts ORDER BY id")
        ads = await conn.fetch("SELECT * FROM ad_accounts ORDER BY id")
        crms = await conn.fetch("SELECT * FROM crm_connections ORDER BY id")
        dirs = await conn.fetch("SELECT * FROM account_directions ORDER BY id")
        insts = await conn.fetch("SELECT * FROM whatsapp_instances ORDER BY name")
        clouds = await conn.fetch("SELECT * FROM whatsapp_cloud_numbers ORDER BY phone_number_id")
    directions_of = {r["name"]: r["default_direction_id"] for r in insts}  # a Cloud number's, by its instance
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
            for r in insts if r["account_id"] == a["id"] and r["channel"] == "evolution"
        ]
        acc["whatsapp_cloud_numbers"] = [
            _clean({
                "phone_number_id": r["phone_number_id"], "waba_id": r["waba_id"],
                "access_token": r["access_token"], "app_secret": r["app_secret"],
                "verify_token": r["verify_token"], "default_direction": directions_of.get(r["instance_name"]),
            }, show_secrets)
            for r in clouds if r["account_id"] == a["id"]
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
        "allow_unlisted_event_names": r["capi_allow_unlisted_event_names"] or None,
        "event_values": {int(k): v for k, v in r["capi_event_values"].items()},
        "interest_fields": r["capi_interest_fields"], "qualified_fields": r["capi_qualified_fields"],
        "scheduled_fields": r["capi_scheduled_fields"],
    }, show_secrets)
    d = _clean({
        "id": r["id"], "name": r["name"], "ad_account": r["ad_account_id"], "pixel_id": r["pixel_id"],
        "whatsapp_business_account_id": r["whatsapp_business_account_id"], "ad_ids": list(r["ad_ids"]),
        "bot_prompt": r["bot_prompt"], "qualification_prompt": r["qualification_prompt"],
        "reply_to": r["reply_to"], "analyse": r["analyse_dialogs"],
        "min_confidence": round(r["min_confidence"], 3) or None,  # a real: 0.7 reads 0.699999988
    }, show_secrets)
    d["capi"] = capi
    return d
