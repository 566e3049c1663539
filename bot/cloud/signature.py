"""Meta's webhook signature: `X-Hub-Signature-256: sha256=<hex HMAC-SHA256 of the raw body>`, keyed
with the app secret (Graph API webhooks, "Validating payloads"; developers.facebook.com/docs/graph-api/
webhooks/getting-started). Checked on the raw bytes before the body is parsed, in constant time.

A webhook names its number only inside the body, so the signature is checked against each app
secret configured (one Meta app usually serves every number; a few at most), and the number found
in the body must then belong to the app whose secret matched (`bot.cloud.routes`).
"""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Iterable

HEADER = "X-Hub-Signature-256"
PREFIX = "sha256="


def sign(raw: bytes, app_secret: str) -> str:
    """The header value Meta sends for `raw` (tests and the benchmark sign with it too)."""
    return PREFIX + hmac.new(app_secret.encode(), raw, hashlib.sha256).hexdigest()


def matching_secret(raw: bytes, header: str | None, app_secrets: Iterable[str]) -> str | None:
    """The app secret that signed `raw`, or None (no header, a malformed one, or no secret signed it)."""
    if not header or not header.startswith(PREFIX):
        return None
    given = header[len(PREFIX):].strip().lower().encode()
    found = None
    for secret in app_secrets:  # every secret is tried, so the time does not tell which one matched
        if hmac.compare_digest(hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest().encode(), given):
            found = secret
    return found
