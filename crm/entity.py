"""A CRM entity as the matcher sees it: field values per entity, its phone numbers and emails.

Both CRMs are read into this one shape, so matching and linking know nothing of either API.
A value keeps what the CRM sent (`value`) plus, for list fields, the item id (`enum_id`, always a
string) and the item's text (`enum_value`) when the CRM gave it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

# the entity types a configured field may be restricted to (tenants CrmField.entity_type)
ENTITY_TYPES = ("lead", "contact", "company", "deal")


@dataclass(frozen=True)
class FieldValue:
    value: Any
    enum_id: str | None = None
    enum_value: str | None = None


@dataclass
class FieldSet:
    """The fields of one CRM entity (the synced one, or a contact read for its phones)."""

    entity_type: str
    entity_id: str
    values: dict[str, list[FieldValue]] = field(default_factory=dict)
    field_types: dict[str, str] = field(default_factory=dict)

    def add(self, field_id: str, value: FieldValue, field_type: str | None = None) -> None:
        self.values.setdefault(field_id, []).append(value)
        if field_type:
            self.field_types[field_id] = field_type


@dataclass
class CrmRecord:
    """The synced entity: its own fields first, then those of the contact its phones came from."""

    crm: str
    entity_type: str
    entity_id: str
    field_sets: list[FieldSet]
    phones: list[str]  # as the CRM wrote them; normalised by the sync
    emails: list[str] = field(default_factory=list)  # as the CRM wrote them, in its order
