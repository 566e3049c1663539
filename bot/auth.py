"""Evolution webhook authentication: the instance's secret header, or Evolution's `jwt_key` bearer JWT.

Evolution signs nothing. A per-instance webhook sends the headers it was configured with as they
are, so `X-Webhook-Secret: <webhook_secret>` works; if those headers hold `jwt_key`, Evolution
instead sends `Authorization: Bearer <JWT>`, HS256-signed with that key, claims
`{iat, exp: iat+600, app: "evolution", action: "webhook"}`. Both are checked in constant time.
HS256 is small enough to verify with hmac here rather than add a JWT dependency.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import time
from collections.abc import Mapping

from core.web import ApiError

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105  # a header name, not a secret
CLOCK_LEEWAY = 30.0  # seconds of clock difference tolerated on exp/nbf


def _b64url(part: str) -> bytes:
    return base64.urlsafe_b64decode(part + "=" * (-len(part) % 4))


def jwt_problem(token: str, secret: str, now: float | None = None) -> str | None:
    """None when `token` is an HS256 JWT signed with `secret` and not expired; else what is wrong."""
    parts = token.split(".")
    if len(parts) != 3:
        return "the bearer token is not a JWT"
    try:
        header = json.loads(_b64url(parts[0]))
        claims = json.loads(_b64url(parts[1]))
        signature = _b64url(parts[2])
    except (binascii.Error, ValueError, UnicodeDecodeError, RecursionError):  # `[[[[...` fits in a header
        return "the bearer token is not a well-formed JWT"
    if not isinstance(header, dict) or header.get("alg") != "HS256":
        return "the JWT must be signed with HS256"
    expected = hmac.new(secret.encode(), f"{parts[0]}.{parts[1]}".encode("ascii"), hashlib.sha256).digest()
    if not hmac.compare_digest(expected, signature):
        return "the JWT signature does not match the instance's webhook secret"
    if not isinstance(claims, dict):
        return "the JWT claims are not an object"
    now = time.time() if now is None else now
    exp, nbf = claims.get("exp"), claims.get("nbf")
    if exp is not None and (not isinstance(exp, int | float) or now > exp + CLOCK_LEEWAY):
        return "the JWT has expired"
    if nbf is not None and (not isinstance(nbf, int | float) or now < nbf - CLOCK_LEEWAY):
        return "the JWT is not valid yet"
    return None


def authenticate(headers: Mapping[str, str], secret: str) -> None:
    """Raise a 401 ApiError unless the request carries the instance's secret or a JWT signed with it."""
    given = headers.get(SECRET_HEADER)
    if given is not None and hmac.compare_digest(given.encode(), secret.encode()):
        return
    auth = headers.get("Authorization", "")
    problem = None
    if auth[:7].lower() == "bearer ":
        problem = jwt_problem(auth[7:].strip(), secret)
        if problem is None:
            return
    if given is not None:
        raise ApiError(401, "invalid_secret", f"{SECRET_HEADER} does not match the instance's webhook secret")
    if problem is not None:
        raise ApiError(401, "invalid_token", problem)
    raise ApiError(
        401, "missing_secret",
        f"send {SECRET_HEADER}: <webhook_secret>, or Authorization: Bearer <HS256 JWT signed with it>",
    )
