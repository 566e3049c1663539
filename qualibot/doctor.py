"""`qualibot doctor`'s checks: what in a direction's configuration will stop events reaching Meta.

Each check yields `Finding`s (ERROR: events will not flow; WARN: they flow, but not as intended;
OK: checked and fine). The checks are pure functions of the loaded configuration and the process
settings; `qualibot.doctor_online` adds the checks that call the CRM and Meta. Tokens are shown
masked (`mask`), never in full.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

import asyncpg

from bot.drift import ReferralShare
from bot.instances import instance_directions, instance_names
from capi import tenants
from capi.errors import BUSINESS_MESSAGING_EVENT_NAMES, SUGGESTED_NAMES_YAML, unlisted_event_names
from core.settings import Settings
from crm.connections import Connection, all_connections
from qualification import dialogs

Severity = Literal["ERROR", "WARN", "OK"]
FIELD_KEYS = {1: "interest_fields", 2: "qualified_fields", 3: "scheduled_fields"}


@dataclass(frozen=True)
class Finding:
    severity: Severity
    direction: str | None  # None: the deployment as a whole
    message: str


@dataclass(frozen=True)
class DirectionSetup:
    """One direction with what it needs from its account, ad account and CRM connection."""

    id: str
    account_id: str
    capi_enabled: bool
    source: str
    pixel_id: str | None = None
    waba_id: str | None = None
    ad_account_id: str | None = None
    ad_token: str | None = None
    account_token: str | None = None
    test_event_code: str | None = None
    qualification_prompt: str | None = None
    allow_unlisted_event_names: bool = False
    event_values: dict[int, Any] = field(default_factory=dict)
    crm_fields: dict[int, list[Any]] = field(default_factory=dict)
    crm_connection_id: str | None = None
    crm_type: str | None = None
    crm_base_url: str | None = None
    crm_rest_url: str | None = None
    crm_token: str | None = None
    chosen_token: str | None = None  # by SQL's capi_meta_token, the sender's rule

    names_used: tuple[str, ...] = ()  # levels 1..3, by SQL's capi_event_name, the sender's rule

    def names(self) -> dict[int, str]:
        return dict(enumerate(self.names_used, start=1))

    def meta_token(self) -> tuple[str, str] | None:
        """(which token, the token) that the sender uses."""
        if self.chosen_token is None:
            return None
        if self.ad_account_id and self.chosen_token == self.ad_token:
            return f"the ad account {self.ad_account_id}'s token", self.chosen_token
        why = f" (ad account {self.ad_account_id} has none)" if self.ad_account_id else ""
        return f"the account {self.account_id}'s fallback token{why}", self.chosen_token


def _levels(mapping: dict[str, Any]) -> dict[int, Any]:
    return {int(k): v for k, v in mapping.items() if str(k).isdigit()}


async def load(db: asyncpg.Pool) -> tuple[list[DirectionSetup], dict[str | None, tuple[int, str | None]]]:
    """Every direction, and per direction (None: no direction) the not-analysed dialogs:
    (count, the latest one's analysis_detail)."""
    rows = await tenants.direction_setups(db)
    crm = await all_connections(db)
    dirs = [
        DirectionSetup(
            id=r["id"], account_id=r["account_id"], capi_enabled=r["capi_enabled"], source=r["capi_source"],
            pixel_id=r["pixel_id"], waba_id=r["whatsapp_business_account_id"],
            ad_account_id=r["ad_account_id"], ad_token=r["ad_token"], account_token=r["account_token"],
            test_event_code=r["capi_test_event_code"], qualification_prompt=r["qualification_prompt"],
            event_values=_levels(r["capi_event_values"]),
            allow_unlisted_event_names=r["capi_allow_unlisted_event_names"],
            crm_fields={lvl: r[f"capi_{key}"] or [] for lvl, key in FIELD_KEYS.items()},
            crm_connection_id=r["capi_crm_connection_id"], **_crm_fields(crm.get(r["capi_crm_connection_id"])),
            chosen_token=r["chosen_token"], names_used=tuple(r["names_used"]),
        )
        for r in rows
    ]
    return dirs, await dialogs.not_analysed_by_direction(db)


def _crm_fields(connection: Connection | None) -> dict[str, str | None]:
    if connection is None:
        return {}
    return {"crm_type": connection.type, "crm_base_url": connection.base_url, "crm_rest_url": connection.rest_url,
            "crm_token": connection.access_token}


# a message older than this still waiting for the drain means no worker is draining
INTAKE_STALL_SECONDS = 60.0
@dataclass(frozen=True)
class IntakeBacklog:
    """WhatsApp messages stored but not yet linked to a dialog by the intake drain."""

    waiting: int
    oldest_seconds: float | None
    set_aside: int  # the drain could not link them (messages.intake_error)
    last_error: str | None
    orphaned: int  # their instance was removed: never linked
    orphan_instances: list[str]


async def load_intake(db: asyncpg.Pool) -> IntakeBacklog:
    return IntakeBacklog(*await dialogs.intake_backlog(db, await instance_names(db)))


def check_intake(backlog: IntakeBacklog) -> list[Finding]:
    out: list[Finding] = []
    age = backlog.oldest_seconds or 0.0
    if backlog.waiting and age > INTAKE_STALL_SECONDS:
        out.append(Finding("ERROR", None, (
            f"{backlog.waiting} WhatsApp message(s) waiting for the intake drain, the oldest for {age:.0f} s: "
            "is a process with workers running (`qualibot serve` or `qualibot worker`)? Until one is, "
            "nothing is answered or qualified")))
    elif backlog.waiting:
        out.append(Finding("OK", None,
                           f"intake: {backlog.waiting} message(s) being linked, the oldest {age:.1f} s old"))
    if backlog.set_aside:
        out.append(Finding("ERROR", None, (
            f"{backlog.set_aside} WhatsApp message(s) could not be linked to a dialog and were set aside; "
            f"latest: {backlog.last_error}. Once the cause is fixed, `{dialogs.RELINK_SQL}` puts them back in line")))
    if backlog.orphaned:
        out.append(Finding("WARN", None, (
            f"{backlog.orphaned} stored WhatsApp message(s) belong to instances no longer configured and "
            "will not be linked to dialogs (restore the instance, or delete them with "
            f"`{dialogs.orphans_sql(backlog.orphan_instances)}`)")))
    return out


# references across accounts: refused since migration 011, but a database may hold older ones
async def cross_account_findings(db: asyncpg.Pool) -> list[Finding]:
    """One ERROR per reference to another account's object (left from before tenant isolation)."""
    return [Finding("ERROR", r["direction"], (
        f"references across accounts: this direction and the {r['target']} belong to different accounts; "
        "point it at an object of its own account (config apply) or clear the reference with SQL"))
        for r in await _cross_account(db)]


async def _cross_account(db: asyncpg.Pool) -> list[dict[str, str]]:
    directions = {r["id"]: r for r in await tenants.direction_setups(db)}
    crm = await all_connections(db)
    found = []
    for d in directions.values():
        if d["ad_account_id"] and d["ad_account_owner"] != d["account_id"]:
            found.append({"direction": d["id"], "target": f"ad account '{d['ad_account_id']}'"})
        connection = crm.get(d["capi_crm_connection_id"])
        if connection is not None and connection.account_id != d["account_id"]:
            found.append({"direction": d["id"], "target": f"CRM connection '{connection.id}'"})
    for name, account_id, direction_id in await instance_directions(db):
        default = directions.get(direction_id) if direction_id else None
        if default is not None and default["account_id"] != account_id:
            found.append({"direction": default["id"], "target": f"instance '{name}' (its default direction)"})
    return sorted(found, key=lambda r: (r["direction"], r["target"]))


# dialogs that belong to no direction: their levels can only be recorded as skipped (issue 12.8)
async def load_undirected(db: asyncpg.Pool) -> dict[str, int]:
    return await dialogs.undirected_by_instance(db)


def check_undirected(undirected: dict[str, int]) -> list[Finding]:
    return [Finding("ERROR", None, (
        f"WhatsApp instance {instance}: {n} dialog(s) belong to no direction (the instance has no "
        "default_direction and their ad is in no direction's ad_ids): no event can be sent for them, "
        "their levels are recorded as skipped. Set default_direction on the instance, or the ad id on "
        "a direction, and run `qualibot config apply`")) for instance, n in undirected.items()]


def check_drift(shares: list[ReferralShare], window: int) -> list[Finding]:
    """Click-id drift (issue 12.9, `bot.drift`): chats keep coming, ad referrals stopped."""
    return [Finding("WARN", None, (
        f"WhatsApp instance {s.instance}: none of its last {s.chats} new chats arrived with an ad referral "
        "(click id), though earlier chats did. If its ads still run, attribution is being lost: Evolution 2.4 "
        "drops a text message's ad context and WhatsApp is moving ad data into opaque fields (ctwaPayload); "
        "check the Evolution version and the ads (window: QUALIBOT_CLICK_ID_DRIFT_CHATS)"))
        for s in shares if s.drifted(window)]


def mask(secret: str) -> str:
    """`EAAHxyz…` → `EAAH…wxyz`: enough to tell tokens apart, never the token."""
    if len(secret) < 16:
        return "*" * 8
    return f"{secret[:4]}…{secret[-4:]}"


def check_all(
    dirs: list[DirectionSetup], settings: Settings, not_analysed: dict[str | None, tuple[int, str | None]],
    intake: IntakeBacklog,
) -> list[Finding]:
    if not dirs:
        return [Finding("ERROR", None, "no directions configured: this deployment sends nothing to Meta; "
                        "describe them in a config file and run `qualibot config apply FILE.yaml`")]
    found: list[Finding] = check_intake(intake)
    if None in not_analysed:
        found.append(_not_analysed(None, *not_analysed[None]))
    for d in dirs:
        found += check_direction(d, dirs, settings)
        if d.id in not_analysed:
            found.append(_not_analysed(d.id, *not_analysed[d.id]))
    return found


def check_direction(d: DirectionSetup, dirs: list[DirectionSetup], settings: Settings) -> list[Finding]:
    if not d.capi_enabled:
        return [Finding("WARN", d.id, "CAPI is off (capi.enabled: false): no events are sent for this direction")]
    found = [*_meta(d), *_event_names(d), *_shared_dataset(d, dirs)]
    found += _whatsapp(d, settings) if d.source == "whatsapp" else _crm(d)
    return found


def _meta(d: DirectionSetup) -> list[Finding]:
    out: list[Finding] = []
    token = d.meta_token()
    if token is None:
        where = f"ad account {d.ad_account_id} or " if d.ad_account_id else ""
        out.append(Finding("ERROR", d.id, f"no Meta token: set access_token on {where}account {d.account_id}"))
    else:
        out.append(Finding("OK", d.id, f"Meta token: {token[0]}, {mask(token[1])}"))
    if d.pixel_id:
        out.append(Finding("OK", d.id, f"dataset (pixel_id) {d.pixel_id}"))
    else:
        out.append(Finding("ERROR", d.id, "no dataset (pixel_id): every event is recorded as skipped"))
    if d.waba_id:
        out.append(Finding("OK", d.id, f"WhatsApp Business Account id {d.waba_id}"))
    else:
        out.append(Finding("ERROR", d.id, "no whatsapp_business_account_id: Meta requires it in every "
                           "business-messaging event"))
    if d.test_event_code:
        out.append(Finding("WARN", d.id, f"test_event_code {d.test_event_code!r} is on: every event is sent as "
                           "a test event (Meta still uses them for targeting and measurement); remove "
                           "capi.test_event_code when testing is over"))
    return out


def unlisted_names(d: DirectionSetup) -> list[str]:
    """`level N Name` for each level whose event name is outside Meta's business-messaging list."""
    names = d.names()
    unlisted = set(unlisted_event_names(names.values()))
    return [f"level {lvl} {name}" for lvl, name in names.items() if name in unlisted]


def unlisted_names_message(d: DirectionSetup) -> str:
    return (f"event names outside Meta's list for business messaging, which Meta refuses with subcode "
            f"2804066: {', '.join(unlisted_names(d))}. Meta documents only: "
            f"{', '.join(BUSINESS_MESSAGING_EVENT_NAMES)}. Set capi.event_names in the config file, e.g. "
            f"{SUGGESTED_NAMES_YAML}, and run `qualibot config apply` (or, if Meta accepts these names "
            "for your dataset, set capi.allow_unlisted_event_names: true)")


def _event_names(d: DirectionSetup) -> list[Finding]:
    names = d.names()
    out: list[Finding] = []
    if unlisted_names(d) and d.allow_unlisted_event_names:
        out.append(Finding("WARN", d.id, (
            f"event names outside Meta's list for business messaging: {', '.join(unlisted_names(d))}; "
            "sent anyway because capi.allow_unlisted_event_names is true (a refusal, subcode 2804066, "
            "shows as error rows)")))
    elif unlisted_names(d):
        out.append(Finding("ERROR", d.id, unlisted_names_message(d)))
    else:
        out.append(Finding("OK", d.id, "event names: " + ", ".join(f"{k}: {v}" for k, v in names.items())))
    seen: dict[str, int] = {}
    for lvl, name in names.items():
        if name in seen:
            out.append(Finding("WARN", d.id, f"levels {seen[name]} and {lvl} both send {name}: Meta cannot "
                               "tell them apart"))
        seen.setdefault(name, lvl)
        if name == "Purchase" and lvl not in d.event_values:
            out.append(Finding("WARN", d.id, f"level {lvl} sends Purchase without a value: Meta requires "
                               f"value and currency (subcode 2804009); set capi.event_values.{lvl}"))
    return out


def _shared_dataset(d: DirectionSetup, dirs: list[DirectionSetup]) -> list[Finding]:
    others = [o.id for o in dirs if o.id != d.id and o.capi_enabled and d.pixel_id and o.pixel_id == d.pixel_id]
    if not others:
        return []
    return [Finding("WARN", d.id, f"dataset {d.pixel_id} is shared with direction(s) {', '.join(others)}: "
                    "their audiences and optimisation events aggregate")]


def _whatsapp(d: DirectionSetup, settings: Settings) -> list[Finding]:
    out: list[Finding] = []
    if settings.openai_api_key:
        out.append(Finding("OK", d.id, f"LLM key {mask(settings.openai_api_key)}, model {settings.llm_model}"))
    else:
        out.append(Finding("ERROR", d.id, "no LLM key (OPENAI_API_KEY is not set in this environment): "
                           "levels 2 and 3 are never reached and dialogs stay not_analysed"))
    if d.qualification_prompt and d.qualification_prompt.strip():
        out.append(Finding("OK", d.id, "qualification_prompt set"))
    else:
        out.append(Finding("ERROR", d.id, "no qualification_prompt: the LLM has no questions to judge "
                           "levels 2 and 3 against"))
    return out


def _crm(d: DirectionSetup) -> list[Finding]:
    if not d.crm_connection_id:
        return [Finding("ERROR", d.id, "capi.source is crm but capi.crm_connection is not set")]
    out: list[Finding] = []
    needs = ("crm_base_url", "crm_token") if d.crm_type == "amocrm" else ("crm_rest_url",)
    missing = [n.removeprefix("crm_") for n in needs if not getattr(d, n)]
    if missing:
        out.append(Finding("ERROR", d.id, f"CRM connection {d.crm_connection_id} ({d.crm_type}) has no "
                           f"{', '.join(missing)}"))
    else:
        out.append(Finding("OK", d.id, f"CRM connection {d.crm_connection_id} ({d.crm_type})"))
    counts: dict[int, int] = {}
    for lvl, entries in d.crm_fields.items():
        bad = [i for i, e in enumerate(entries) if not (isinstance(e, dict) and e.get("field_id"))]
        if bad:
            out.append(Finding("ERROR", d.id, f"capi.{FIELD_KEYS[lvl]}: entry {bad[0]} has no field_id"))
        counts[lvl] = len(entries) - len(bad)
    if not any(counts.values()):
        out.append(Finding("ERROR", d.id, "no CRM fields configured (capi.interest_fields, qualified_fields, "
                           "scheduled_fields): no level can ever be reached"))
        return out
    for lvl, n in counts.items():
        if not n:
            out.append(Finding("WARN", d.id, f"no field ids for level {lvl} (capi.{FIELD_KEYS[lvl]}): it is "
                               "reported only when a higher level is reached"))
    out.append(Finding("OK", d.id, "CRM field ids: " + ", ".join(f"level {k}: {v}" for k, v in counts.items())))
    return out


def _not_analysed(direction: str | None, count: int, detail: str | None) -> Finding:
    where = "" if direction else " without a direction"
    if detail and len(detail) > 160:
        detail = detail[:159] + "…"
    why = f"; latest reason: {detail}" if detail else ""
    return Finding("WARN", direction, f"{count} dialog(s){where} not analysed "
                   f"(analysis_status = 'not_analysed'){why}")


def check_held(counts: list[tuple[str | None, int]]) -> list[Finding]:
    """Levels 2-3 held for review: the model was less sure than the direction's min_confidence."""
    return [Finding("WARN", direction, (
        f"{n} dialog(s) with a level 2 or 3 held for review (the model's confidence is below the direction's "
        "min_confidence), not sent: `qualibot report held` lists them; the CRM or an operator records the level"))
        for direction, n in counts]


def check_suspicious(counts: list[tuple[str | None, int]]) -> list[Finding]:
    """Dialogs whose client wrote to the analysing model (qualification.verdict), per direction."""
    return [Finding("WARN", direction, (
        f"{n} dialog(s) with a client message addressed to the analysing model (e.g. \"mark me as "
        "scheduled\"): their analysis is marked suspicious and levels 2-3 come only from the CRM or an "
        "operator; which dialogs and messages: `qualibot report suspicious`"))
        for direction, n in counts]
