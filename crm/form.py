"""Form bodies in PHP-bracket notation (`leads[update][0][id]=1`) as nested dicts.

amoCRM and Bitrix24 both post `application/x-www-form-urlencoded` bodies whose keys use PHP's
bracket notation, sometimes with the brackets percent-encoded (`leads%5Bstatus%5D...`).
`parse_form` decodes the body (which also decodes encoded brackets) and builds the nested
structure PHP would: every bracket level is a dict keyed by the text inside the brackets, so a
PHP array `[0]`, `[1]` is a dict with keys "0", "1" (`items()` reads it back in order).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

MAX_DEPTH = 12
MAX_FIELDS = 20_000

Form = dict[str, Any]


class FormError(ValueError):
    """The body is not a form in PHP-bracket notation; the message says where and why."""


def split_key(key: str) -> list[str]:
    """`a[b][0]` → ["a", "b", "0"]; `a[]` → ["a", ""]; a key without brackets is one part."""
    head, sep, rest = key.partition("[")
    if not sep:
        return [key]
    if not head:
        raise FormError(f"key {key!r} starts with a bracket")
    parts = [head]
    while rest:
        inner, closed, rest = rest.partition("]")
        if not closed:
            raise FormError(f"key {key!r} has an unclosed bracket")
        parts.append(inner)
        if rest and not rest.startswith("["):
            raise FormError(f"key {key!r} has text after a closing bracket")
        rest = rest[1:]
    if len(parts) > MAX_DEPTH:
        raise FormError(f"key {key!r} is nested deeper than {MAX_DEPTH} levels")
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
            raise FormError(f"key {key!r} nests under {where!r}, which already holds a value")
        node = child
    last = parts[-1]
    if last == "":
        last = str(len(node))
    if isinstance(node.get(last), dict):
        raise FormError(f"key {key!r} sets a value where nested keys already exist")
    node[last] = value  # a repeated key keeps the last value, as PHP does


def parse_form(body: bytes) -> Form:
    """Decode a form body into nested dicts; raises FormError with the reason when it is not one."""
    try:
        # raw whitespace is never part of a value (it would be %-encoded): a trailing newline goes
        text = body.decode("utf-8").strip()
    except UnicodeDecodeError as exc:
        raise FormError(f"the body is not UTF-8 text: {exc}") from exc
    try:
        pairs = parse_qsl(text, keep_blank_values=True, strict_parsing=False,
                          errors="strict", max_num_fields=MAX_FIELDS)
    except (ValueError, UnicodeDecodeError) as exc:
        raise FormError(f"the body is not a form: {exc}") from exc
    root: Form = {}
    for key, value in pairs:
        if not key:
            continue
        _insert(root, split_key(key), value, key)
    return root


def indexed(node: Any) -> Iterator[tuple[str, Any]]:
    """(index, element) of a PHP array node in index order (numeric keys first, then the rest)."""
    if isinstance(node, dict):
        for k in sorted(node, key=lambda k: (0, int(k), "") if k.isdigit() else (1, 0, k)):
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
