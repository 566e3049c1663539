"""Tenants as code: the config file schema, `config apply` and `config export`.

The file is the truth for what it names: applying it upserts every account, ad account, CRM
connection, direction and instance it lists, in one transaction, and changes nothing when the
database already matches. Objects missing from the file are left alone (removal is deliberate
and done in SQL), so applying one tenant's file never touches another tenant; a file that names
another account's instance, direction, ad account or CRM connection is refused (`tenants_db`).

Secrets: `config export` prints MASK in place of each secret (and of the code in a Bitrix24
`rest_url`); MASK in a file means "keep the stored secret", so an export applies back unchanged.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from bot.cloud.numbers import instance_name as cloud_instance_name
from core.errors import BadInput

MASK = "***"
SECRET_MIN_LENGTH = 16  # webhook secrets and tokens we check: long enough not to be guessed
# Bitrix24 inbound webhook: https://<portal>/rest/<user id>/<code>/ ; the code is the secret
_REST_URL = re.compile(r"^(?P<head>https?://[^/]+/rest/[^/]+/)(?P<code>[^/]+)(?P<tail>/.*)?$")
_URL_PATH = re.compile(r"^(?P<head>https?://[^/]+)(?P<code>/.+)$")


def rest_url_code(url: str) -> str | None:
    """The secret part of a Bitrix24 `rest_url`: the webhook code (any path, for an unknown shape)."""
    m = _REST_URL.match(url) or _URL_PATH.match(url)
    return m["code"] if m else None


def mask_rest_url(url: str) -> str:
    """`https://clinic.bitrix24.ru/rest/1/MASK/`: the host and user stay readable, the code does not."""
    m = _REST_URL.match(url) or _URL_PATH.match(url)
    if m is None:
        return url
    tail = m.groupdict().get("tail") or ""
    return f"{m['head']}{MASK if m.re is _REST_URL else '/' + MASK}{tail}"


def is_masked(column: str, value: Any) -> bool:
    """Whether a file's value is export's mask (meaning: keep what is stored)."""
    if column == "rest_url" and isinstance(value, str):
        return MASK in value and mask_rest_url(value) == value
    return isinstance(value, str) and value == MASK


def _long_secret(value: str | None) -> str | None:
    if value is not None and value != MASK and len(value) < SECRET_MIN_LENGTH:
        raise ValueError(f"must be at least {SECRET_MIN_LENGTH} characters (or {MASK} to keep the stored one)")
    return value


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class CrmField(_Strict):
    field_id: str
    field_name: str | None = None
    field_type: str | None = None
    enum_id: str | None = None
    enum_value: str | None = None
    value: str | None = None  # text fields: equality
    entity_type: Literal["contact", "deal", "lead", "company"] | None = None

    @field_validator("field_id", "enum_id", "value", mode="before")
    @classmethod
    def _as_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int | float) and not isinstance(v, bool) else v


class EventValue(_Strict):
    value: float = Field(ge=0)
    currency: str = Field(pattern=r"^[A-Za-z]{3}$")


class Capi(_Strict):
    enabled: bool = False
    source: Literal["whatsapp", "crm"] = "whatsapp"
    crm_connection: str | None = None
    test_event_code: str | None = None
    event_names: dict[Literal[1, 2, 3], str] = Field(default_factory=dict)
    # the operator vouches that Meta accepts names outside its business-messaging list for this dataset
    allow_unlisted_event_names: bool = False
    event_values: dict[Literal[1, 2, 3], EventValue] = Field(default_factory=dict)
    interest_fields: list[CrmField] = Field(default_factory=list)
    qualified_fields: list[CrmField] = Field(default_factory=list)
    scheduled_fields: list[CrmField] = Field(default_factory=list)

    @model_validator(mode="after")
    def _crm_needs_connection(self) -> Capi:
        if self.source == "crm" and not self.crm_connection:
            raise ValueError("capi.source is crm: capi.crm_connection must name one of the account's connections")
        return self


class DirectionConfig(_Strict):
    id: str = Field(min_length=1)
    name: str
    ad_account: str | None = None
    pixel_id: str | None = None
    whatsapp_business_account_id: str | None = None
    ad_ids: list[str] = Field(default_factory=list)
    bot_prompt: str | None = None
    qualification_prompt: str | None = None
    # who the chatbot answers: everyone, only people who came from an ad (a click id), or no one
    reply_to: Literal["all", "ad_leads", "off"] = "all"
    # which dialogs the LLM analyses: an analysis costs money, and a dialog without a click id sends no event
    analyse: Literal["ad_leads", "all"] = "ad_leads"
    # a level 2 or 3 whose verdict is less sure than this is held for review, not sent (0: never)
    min_confidence: float = Field(0.0, ge=0, le=1)
    capi: Capi = Field(default_factory=Capi)

    @field_validator("pixel_id", "whatsapp_business_account_id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @field_validator("ad_ids", mode="before")
    @classmethod
    def _ids_text(cls, v: Any) -> Any:
        return [str(x) if isinstance(x, int) else x for x in v] if isinstance(v, list) else v


class AdAccount(_Strict):
    id: str = Field(min_length=1)
    access_token: str | None = None


class InstanceConfig(_Strict):
    name: str = Field(min_length=1)
    api_url: str = Field(pattern=r"^https?://")
    api_key: str = Field(min_length=1)
    webhook_secret: str
    default_direction: str | None = None

    _secret_length = field_validator("webhook_secret")(_long_secret)


class CloudNumberConfig(_Strict):
    """A WhatsApp Cloud API number (Meta's own webhook); its instance is `cloud-<phone_number_id>`."""

    phone_number_id: str = Field(pattern=r"^[0-9]{1,64}$")
    waba_id: str = Field(pattern=r"^[0-9]{1,64}$")
    access_token: str = Field(min_length=1)
    app_secret: str
    verify_token: str
    default_direction: str | None = None

    _secret_length = field_validator("app_secret", "verify_token")(_long_secret)

    @field_validator("phone_number_id", "waba_id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v


class CrmConnection(_Strict):
    id: str = Field(min_length=1)
    type: Literal["amocrm", "bitrix24"]
    base_url: str | None = Field(default=None, pattern=r"^https?://")
    access_token: str | None = None
    account_id: str | None = None
    subdomain: str | None = None
    webhook_secret: str | None = None
    rest_url: str | None = Field(default=None, pattern=r"^https?://")
    application_token: str | None = None
    rate_limit_per_second: float | None = Field(default=None, gt=0)

    _secret_length = field_validator("webhook_secret", "application_token")(_long_secret)

    @field_validator("account_id", mode="before")
    @classmethod
    def _id_text(cls, v: Any) -> Any:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else v

    @model_validator(mode="after")
    def _complete(self) -> CrmConnection:
        if self.type == "amocrm":
            missing = [f for f in ("base_url", "access_token", "webhook_secret") if not getattr(self, f)]
            if not (self.account_id or self.subdomain):
                missing.append("account_id or subdomain")
        else:
            missing = [f for f in ("rest_url", "application_token") if not getattr(self, f)]
        if missing:
            raise ValueError(f"a {self.type} connection needs {', '.join(missing)}")
        return self


class Account(_Strict):
    id: str = Field(min_length=1)
    name: str
    default_region: str = Field(default="RU", pattern=r"^[A-Z]{2}$")
    access_token: str | None = None
    ad_accounts: list[AdAccount] = Field(default_factory=list)
    whatsapp_instances: list[InstanceConfig] = Field(default_factory=list)
    whatsapp_cloud_numbers: list[CloudNumberConfig] = Field(default_factory=list)
    crm_connections: list[CrmConnection] = Field(default_factory=list)
    directions: list[DirectionConfig] = Field(default_factory=list)

    @model_validator(mode="after")
    def _waba_from_cloud_numbers(self) -> Account:
        """A direction without `whatsapp_business_account_id` takes its Cloud number's `waba_id`: the
        number's whose default direction it is, else the account's only WABA among its numbers."""
        wabas = {n.waba_id for n in self.whatsapp_cloud_numbers}
        for d in self.directions:
            if d.whatsapp_business_account_id:
                continue
            own = {n.waba_id for n in self.whatsapp_cloud_numbers if n.default_direction == d.id}
            chosen = own or wabas
            if len(chosen) == 1:
                d.whatsapp_business_account_id = next(iter(chosen))
        return self


class TenantConfig(_Strict):
    accounts: list[Account] = Field(default_factory=list)


class ConfigError(BadInput):
    """The file is not a valid config; `problems` holds one line per error, each naming its path."""

    code = "invalid_config"

    def __init__(self, problems: list[str]) -> None:
        super().__init__("\n".join(problems))
        self.problems = problems


def _path(loc: tuple[int | str, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part.isdigit() and out.endswith(("event_names", "event_values")):
            out += f".{part}"
        else:
            out += ("." if out else "") + part
    return out


def _cross_references(cfg: TenantConfig) -> list[str]:
    problems: list[str] = []
    seen: dict[str, dict[str, str]] = {"account": {}, "direction": {}, "instance": {}, "crm": {}, "ad": {},
                                       "cloud": {}}

    def unique(kind: str, key: str, path: str) -> None:
        if key in seen[kind]:
            problems.append(f"{path}: duplicate id {key!r} (also at {seen[kind][key]})")
        seen[kind][key] = path

    for ai, acc in enumerate(cfg.accounts):
        base = f"accounts[{ai}]"
        unique("account", acc.id, f"{base}.id")
        ads = {a.id for a in acc.ad_accounts}
        crms = {c.id: c for c in acc.crm_connections}
        dirs = {d.id for d in acc.directions}
        for i, ad in enumerate(acc.ad_accounts):
            unique("ad", ad.id, f"{base}.ad_accounts[{i}].id")
        for i, crm in enumerate(acc.crm_connections):
            unique("crm", crm.id, f"{base}.crm_connections[{i}].id")
        for i, inst in enumerate(acc.whatsapp_instances):
            unique("instance", inst.name, f"{base}.whatsapp_instances[{i}].name")
            if inst.default_direction and inst.default_direction not in dirs:
                problems.append(
                    f"{base}.whatsapp_instances[{i}].default_direction: "
                    f"no direction {inst.default_direction!r} in this account"
                )
        for i, num in enumerate(acc.whatsapp_cloud_numbers):
            p = f"{base}.whatsapp_cloud_numbers[{i}]"
            unique("cloud", num.phone_number_id, f"{p}.phone_number_id")
            unique("instance", cloud_instance_name(num.phone_number_id), f"{p}.phone_number_id")
            if num.default_direction and num.default_direction not in dirs:
                problems.append(f"{p}.default_direction: no direction {num.default_direction!r} in this account")
        for i, d in enumerate(acc.directions):
            p = f"{base}.directions[{i}]"
            unique("direction", d.id, f"{p}.id")
            if d.ad_account and d.ad_account not in ads:
                problems.append(f"{p}.ad_account: no ad account {d.ad_account!r} in this account")
            if d.capi.crm_connection and d.capi.crm_connection not in crms:
                problems.append(f"{p}.capi.crm_connection: no CRM connection {d.capi.crm_connection!r} in this account")
    return problems


def parse_config(data: Any) -> TenantConfig:
    """Validate a loaded YAML document; raises ConfigError listing every problem."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(["(top level): must be a mapping with an `accounts` list"])
    try:
        cfg = TenantConfig.model_validate(data)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "literal_error" and "expected" in err.get("ctx", {}):
                msg = "must be " + str(err["ctx"]["expected"]).replace("'", "")
            problems.append(f"{_path(tuple(err['loc'])) or '(top level)'}: {msg}")
        raise ConfigError(problems) from None
    problems = _cross_references(cfg)
    if problems:
        raise ConfigError(problems)
    return cfg
