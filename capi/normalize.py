r"""Customer information as Meta wants it: normalised, then SHA-256 hex (reference meta-capi.md §3).

- phone: through `core.phones` to international digits with the account's default region
  (`8 (916) 123-45-67` in RU → `79161234567`), then hashed;
- email: trimmed and lower-cased, then hashed, as facebook-python-business-sdk 25.0.2
  serverside/normalize.py does for `em` (`data.lower().strip()`, then `.+@.+\..+`); ours also
  refuses whitespace or a second `@` inside (a typo in a CRM, far more often than a quoted name);
- a value that already is a SHA-256 hex digest passes through (lower-cased), never hashed twice;
- `ctwa_clid` and `whatsapp_business_account_id` are identifiers Meta wants raw: never hashed here.
"""

from __future__ import annotations

import hashlib
import re

from core.phones import normalize_phone

_SHA256_HEX = re.compile(r"^[0-9a-fA-F]{64}$")
_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def sha256_hex(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def is_hashed(value: str) -> bool:
    return bool(_SHA256_HEX.match(value.strip()))


def normalize_email(raw: str | None) -> str | None:
    """`  John_Smith@Gmail.com ` → `john_smith@gmail.com`; None when it is not an address."""
    if raw is None:
        return None
    value = raw.strip().lower()
    return value if _EMAIL.match(value) else None


def hash_phone(raw: str | None, default_region: str | None = "RU") -> str | None:
    """The `ph` value: SHA-256 of the international digits, or the given hash; None if not a phone."""
    if raw is None or not str(raw).strip():
        return None
    text = str(raw).strip()
    if is_hashed(text):
        return text.lower()
    digits = normalize_phone(text, default_region)
    return sha256_hex(digits) if digits else None


def hash_email(raw: str | None) -> str | None:
    """The `em` value: SHA-256 of the normalised address, or the given hash; None if not an address."""
    if raw is None or not raw.strip():
        return None
    if is_hashed(raw):
        return raw.strip().lower()
    value = normalize_email(raw)
    return sha256_hex(value) if value else None
