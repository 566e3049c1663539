"""amoCRM account webhooks: `{section}[{action}][{i}][...]` plus an `account[...]` block.

Sections `leads` and `contacts` (companies arrive under `contacts` with `[type]=company`) are
synced; other sections (tasks, talks, messages, ...) and note events are valid but carry no
field change, so they are acknowledged and ignored. The body is only a trigger: the sync reads
the entity from the API, because webhook field values come in an older, lossy shape.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field

from core.errors import BadInput, Unauthorized
from core.web import is_digits
from crm.connections import Connection
from crm.form import Form, indexed, is_id, text
from crm.store import EntityEvent

SYNC_ACTIONS = {"add", "update", "status", "restore", "responsible"}
SECTION_TYPES = {"leads": "lead", "contacts": "contact", "companies": "company"}


@dataclass
class AmoWebhook:
    events: list[EntityEvent] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # section[action] pairs with nothing to sync


def secret_matches(connection: Connection, secret: str) -> bool:
    expected = (connection.webhook_secret or "").encode()
    return bool(expected) and hmac.compare_digest(expected, secret.encode())


def check_account(form: Form, connection: Connection) -> None:
    """`account[id]` or `account[subdomain]` must be the connection's amoCRM account."""
    account_id, subdomain = text(form, "account", "id"), text(form, "account", "subdomain")
    if account_id is None and subdomain is None:
        raise BadInput(code="missing_account", detail="an amoCRM webhook carries account[id] or account[subdomain]; "
                                               "this body has neither")
    if account_id is not None and connection.crm_account_id and account_id == connection.crm_account_id:
        return
    if subdomain is not None and connection.subdomain and subdomain.lower() == connection.subdomain.lower():
        return
    raise Unauthorized(code="account_mismatch", detail="the webhook's amoCRM account is not the one of this connection")


def _entity_type(section: str, item: dict[str, object]) -> str:
    if section == "contacts" and str(item.get("type", "")).strip().lower() == "company":
        return "company"
    return SECTION_TYPES[section]


def parse(form: Form) -> AmoWebhook:
    hook = AmoWebhook()
    for section, actions in form.items():
        if section == "account" or not isinstance(actions, dict):
            continue
        for action, entities in actions.items():
            if section not in SECTION_TYPES or (action not in SYNC_ACTIONS and action != "delete"):
                hook.ignored.append(f"{section}[{action}]")
                continue
            if not isinstance(entities, dict) or not entities:
                raise BadInput(code="invalid_entity", detail=f"{section}[{action}] holds no entities")
            for index, item in indexed(entities):
                hook.events.append(_event(section, action, index, item))
    if not hook.events and not hook.ignored:
        raise BadInput(code="no_entities", detail="the body carries no amoCRM entity: expected keys like "
                                           "leads[update][0][id] or contacts[add][0][id]")
    return hook


def _event(section: str, action: str, index: str, item: object) -> EntityEvent:
    if not is_digits(index):  # amoCRM numbers its entities; `²` or a name is not a list it sent
        raise BadInput(code="invalid_entity", detail=f"{section}[{action}][{index[:40]}]: the index is not a number")
    if not isinstance(item, dict):
        raise BadInput(code="invalid_entity", detail=f"{section}[{action}][{index}] is not an entity")
    entity_id = text(item, "id")
    if entity_id is None or not is_id(entity_id):
        raise BadInput(code="invalid_entity", detail=f"{section}[{action}][{index}][id] is missing or not a number")
    return EntityEvent(
        event=f"{section}.{action}", entity_type=_entity_type(section, item), entity_id=entity_id,
        payload={"action": action, "entity": item}, sync=action != "delete",
    )
