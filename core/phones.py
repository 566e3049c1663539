"""Phone numbers as international digits (`79161234567`), the one form stored and compared."""

from __future__ import annotations

import re

import phonenumbers

_DIGITS = re.compile(r"\D+")


def normalize_phone(raw: str | int | None, default_region: str | None = "RU") -> str | None:
    """`8 (916) 123-45-67` with region RU → `79161234567`; `+1 650 555 1212` → `16505551212`.

    Returns None for something that is not a possible phone number. Local forms are read with
    `default_region`; bare digits that already carry a country code (`79161234567`, as WhatsApp
    JIDs do) are read as international.
    """
    if raw is None:
        return None
    text = str(raw).strip()
    if not text:
        return None
    digits = _DIGITS.sub("", text)
    if not digits or len(digits) > 17:
        return None
    candidates: list[str] = []
    if text.startswith("+") or text.startswith("00"):
        candidates.append("+" + digits.removeprefix("00"))
    else:
        candidates.append(text)
        candidates.append("+" + digits)
    for candidate in candidates:
        try:
            number = phonenumbers.parse(candidate, None if candidate.startswith("+") else default_region)
        except phonenumbers.NumberParseException:
            continue
        if phonenumbers.is_possible_number(number):
            return f"{number.country_code}{number.national_number}"
    return None
