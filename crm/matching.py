"""Which levels a CRM entity has reached, by a direction's configured fields.

A level is reached when ANY of its fields matches (OR). A configured field is
`{field_id, field_name?, field_type?, enum_id?, enum_value?, value?, entity_type?}` and matches when
one of the entity's values for `field_id`:
- has the item id `enum_id` (compared as strings: amoCRM sends ints, Bitrix24 strings), else
- has the item text `enum_value` (case-insensitive; the raw value when the CRM gave no text), else
- equals `value` (text after trimming; numbers numerically; booleans as booleans for checkbox
  and boolean fields), else, with none of the three given,
- is true: a checkbox or boolean field that is set ("1"/"0", "Y"/"N", true/false, 1/0 all read).
`entity_type` (Bitrix24: deal, lead, contact) restricts the field to values of that entity.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal, InvalidOperation
from typing import Any

from crm.entity import CrmRecord, FieldValue

BOOLEAN_TYPES = {"checkbox", "boolean"}
_TRUE = {"1", "y", "yes", "true", "on"}
_FALSE = {"0", "n", "no", "false", "off", ""}


def as_bool(value: Any) -> bool | None:
    """A CRM boolean in any of its spellings, or None when the value is not a boolean."""
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value in (0, 1):
        return bool(value)
    if isinstance(value, str):
        folded = value.strip().lower()
        if folded in _TRUE:
            return True
        if folded in _FALSE:
            return False
    return None


def _cfg_text(value: Any) -> str | None:
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return text or None


def _number(value: Any) -> Decimal | None:
    if isinstance(value, bool):
        return None
    try:
        return Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return None


def _equal(actual: Any, expected: str, field_type: str) -> bool:
    if field_type in BOOLEAN_TYPES:
        a, e = as_bool(actual), as_bool(expected)
        if a is not None and e is not None:
            return a == e
    if isinstance(actual, bool):
        return as_bool(expected) is actual
    if str(actual).strip() == expected:
        return True
    a_num, e_num = _number(actual), _number(expected)
    return a_num is not None and e_num is not None and a_num.is_finite() and a_num == e_num


def values_match(cfg: Mapping[str, Any], values: Iterable[FieldValue], field_type: str | None = None) -> bool:
    """Does one of `values` (one field of one entity) satisfy the configured field `cfg`?"""
    values = list(values)
    enum_id = _cfg_text(cfg.get("enum_id"))
    if enum_id is not None:
        return any(v.enum_id == enum_id for v in values)
    enum_value = _cfg_text(cfg.get("enum_value"))
    if enum_value is not None:
        wanted = enum_value.casefold()
        return any(
            str(v.enum_value if v.enum_value is not None else v.value).strip().casefold() == wanted
            for v in values if v.value is not None or v.enum_value is not None
        )
    kind = str(cfg.get("field_type") or field_type or "").lower()
    expected = _cfg_text(cfg.get("value"))
    if expected is not None:
        return any(v.value is not None and _equal(v.value, expected, kind) for v in values)
    return any(as_bool(v.value) is True for v in values)


def field_matches(cfg: Mapping[str, Any], record: CrmRecord) -> bool:
    field_id = _cfg_text(cfg.get("field_id"))
    if field_id is None:
        return False
    restrict = _cfg_text(cfg.get("entity_type"))
    for fs in record.field_sets:
        if restrict is not None and fs.entity_type != restrict.lower():
            continue
        values = fs.values.get(field_id)
        if values and values_match(cfg, values, fs.field_types.get(field_id)):
            return True
    return False


def levels_reached(fields: Mapping[int, Iterable[Mapping[str, Any]]], record: CrmRecord) -> list[int]:
    """The levels (ascending) for which at least one configured field matches the record."""
    return sorted(level for level, cfgs in fields.items() if any(field_matches(c, record) for c in cfgs))


def label_fields(field_lists: Iterable[Iterable[Mapping[str, Any]]]) -> set[str]:
    """Configured fields matched by item text only (Bitrix24 must then read its user-field lists)."""
    return {
        str(c["field_id"]).strip()
        for cfgs in field_lists for c in cfgs
        if c.get("field_id") is not None and _cfg_text(c.get("enum_id")) is None
        and _cfg_text(c.get("enum_value")) is not None
    }
