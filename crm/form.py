"""Form bodies in PHP-bracket notation (`leads[update][0][id]=1`) as nested dicts.

amoCRM and Bitrix24 both post `application/x-www-form-urlencoded` bodies whose keys use PHP's
bracket notation, sometimes with the brackets percent-encoded (`leads%5Bstatus%5D...`).
`parse_form` decodes the body (which also decodes encoded brackets) and builds the nested
structure PHP would: every bracket level is a dict keyed by the text inside the brackets, so a
PHP array `[0]`, `[1]` is a dict with keys "0", "1" (`items()` reads it back in order).

Own code, not qs-codec (the port of JavaScript's `qs`, the one maintained library for bracket keys):
it turns indexes into lists up to a limit and dicts past it, merges repeated keys into lists, and
accepts malformed keys as literal text, where these webhooks want PHP's reading and a 400 naming
the broken key; its cost on a megabyte key would still have to be proven.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

from core.errors import BadInput
from core.web import is_digits

MAX_DEPTH = 12  # parts of a key: `leads[update][0][custom_fields][0][values][0][value]` has 8
MAX_KEY_CHARS = 512
MAX_FIELDS = 20_000  # default of QUALIBOT_FORM_MAX_FIELDS

Form = dict[str, Any]


class FormError(BadInput):
    """The body is not a form in PHP-bracket notation; the message says where and why."""

    code = "invalid_form"


def _shown(key: str) -> str:
    return repr(key if len(key) <= 80 else key[:80] + "...")


def split_key(key: str) -> list[str]:
    """`a[b][0]` → ["a", "b", "0"]; `a[]` → ["a", ""]; a key without brackets is one part.

    One pass with `str.find` from a moving position (never a copy of the rest of the key), and
    refused before any work past MAX_KEY_CHARS characters or MAX_DEPTH parts."""
    if len(key) > MAX_KEY_CHARS:
        raise FormError(f"key {_shown(key)} is longer than {MAX_KEY_CHARS} characters")
    at = key.find("[")
    if at < 0:
        return [key]
    if at == 0:
        raise FormError(f"key {_shown(key)} starts with a bracket")
    parts = [key[:at]]
    while at < len(key):
        if key[at] != "[":
            raise FormError(f"key {_shown(key)} has text after a closing bracket")
        end = key.find("]", at + 1)
        if end < 0:
            raise FormError(f"key {_shown(key)} has an unclosed bracket")
        parts.append(key[at + 1:end])
        if len(parts) > MAX_DEPTH:
            raise FormError(f"key {_shown(key)} is nested deeper than {MAX_DEPTH} levels")
        at = end + 1
    return parts


def _insert(root: Form, parts: list[str], value: str, key: str) -> None:
    node = root
    for i, part in enumerate(parts[:-1]):
        if part == "":
            part = str(len(node))  # `a[][x]`: PHP appends a new element
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        elif not isinstance(child, dict):
            where = "[".join(parts[: i + 1])
            raise FormError(f"key {_shown(key)} nests under {where!r}, which already holds a value")
        node = child
    last = parts[-1]
    if last == "":
        last = str(len(node))
    if isinstance(node.get(last), dict):
        raise FormError(f"key {_shown(key)} sets a value where nested keys already exist")
    node[last] = value  # a repeated key keeps the last value, as PHP does


def parse_form(body: bytes, max_fields: int = MAX_FIELDS) -> Form:
    """Decode a form body into nested dicts; raises FormError with the reason when it is not one.

    Linear in the body: parse_qsl refuses more than `max_fields` pairs before decoding any, and each
    key is split in one pass."""
    try:
        # raw whitespace is never part of a value (it would be %-encoded): a trailing newline goes
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise FormError(f"the body is not UTF-8 text: {exc}") from exc
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=max_fields)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormError(f"the body is not a form: {exc}") from exc
    if "\x00" in text or "%00" in text:  # NUL, which PostgreSQL cannot store, goes (strict UTF-8 has no surrogates)
        pairs = [(k.replace("\x00", ""), v.replace("\x00", "")) for k, v in pairs]
    root: Form = {}
    for key, value in pairs:
        if not key:
            continue
        _insert(root, split_key(key), value, key)
    return root


def is_id(text: str) -> bool:
    """A CRM entity id: ASCII digits that fit a bigint."""
    return is_digits(text) and len(text) <= 18


def indexed(node: Any) -> Iterator[tuple[str, Any]]:
    """(index, element) of a PHP array node in index order (numeric keys first, then the rest)."""
    if isinstance(node, dict):
        for k in sorted(node, key=lambda k: (0, int(k), "") if is_digits(k) else (1, 0, k)):
            yield k, node[k]
    elif isinstance(node, list):
        yield from ((str(i), v) for i, v in enumerate(node))


def items(node: Any) -> Iterator[Any]:
    """The elements of a PHP array node in index order."""
    return (value for _, value in indexed(node))


def text(node: Any, *path: str) -> str | None:
    """The scalar at `path` below `node`, stripped, or None when absent, empty or not a scalar."""
    for part in path:
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    if isinstance(node, str):
        node = node.strip()
        return node or None
    return None
