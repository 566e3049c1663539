"""Decoding the value encodings Evolution puts in webhooks.

From 2.3.6 Evolution turns protobuf bytes into objects with numeric string keys (`{"0": 78, "1": 156}`)
and 64-bit integers into `{"low": .., "high": .., "unsigned": ..}`; up to 2.3.5 the same fields were
base64 strings and decimal strings. These helpers read either form.
"""

from __future__ import annotations

import base64
import math
from datetime import UTC, datetime
from typing import Any

from core.web import is_digits

# keys whose values are images or key material: never worth keeping in a stored referral
DROPPED_KEYS = frozenset({"thumbnail", "jpegThumbnail", "mediaKey", "base64"})
MAX_DEPTH = 8


def is_long(value: Any) -> bool:
    return isinstance(value, dict) and "low" in value and "high" in value and len(value) <= 3


def as_int(value: Any) -> int | None:
    """An int from a number, a decimal string or a `{low, high, unsigned}` long; else None."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        return int(value) if math.isfinite(value) else None
    if isinstance(value, str):
        text = value.strip()
        digits = text.removeprefix("-")
        return int(text) if is_digits(digits) and len(digits) <= 20 else None  # int() is quadratic in digits
    if is_long(value):
        low, high = value.get("low"), value.get("high")
        if not isinstance(low, int) or not isinstance(high, int):
            return None
        number = ((high & 0xFFFFFFFF) << 32) | (low & 0xFFFFFFFF)
        if not value.get("unsigned") and number >= 1 << 63:
            number -= 1 << 64
        return number
    return None


def as_bytes(value: Any) -> bytes | None:
    """Bytes from a numeric-keyed object (`{"0": 78, ...}`); None for anything else."""
    if not isinstance(value, dict) or not value:
        return None
    try:
        items = sorted((int(k), v) for k, v in value.items())
    except (TypeError, ValueError):
        return None
    if any(not isinstance(v, int) or isinstance(v, bool) or not 0 <= v <= 255 for _, v in items):
        return None
    return bytes(v for _, v in items)


def as_text(value: Any) -> str | None:
    """A non-empty stripped string, or None."""
    if isinstance(value, str):
        text = value.strip()
        return text or None
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return None


def as_bool(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("true", "1", "yes")
    return bool(value)


def timestamp(value: Any) -> datetime:
    """`messageTimestamp` (seconds, milliseconds, string or long) as a UTC datetime; now if unreadable."""
    seconds = as_int(value)
    if seconds is None or seconds <= 0:
        return datetime.now(UTC)
    if seconds > 10**11:  # milliseconds
        seconds //= 1000
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return datetime.now(UTC)


def plain(value: Any, depth: int = 0) -> Any:
    """JSON-friendly copy: byte objects as base64, longs as ints, thumbnails dropped, depth bounded."""
    if depth > MAX_DEPTH:
        return None
    if isinstance(value, dict):
        if is_long(value):
            return as_int(value)
        raw = as_bytes(value)
        if raw is not None:
            return base64.b64encode(raw).decode("ascii")
        return {str(k): plain(v, depth + 1) for k, v in value.items() if k not in DROPPED_KEYS}
    if isinstance(value, list):
        return [plain(v, depth + 1) for v in value[:50]]
    return value
