"""Evolution webhook authentication: the secret header, Evolution's `jwt_key` JWT, or the body's `apikey`.

Evolution signs nothing (evolution-api 2.3.7 and 2.4.0-rc2
`src/api/integrations/event/webhook/webhook.controller.ts`, `emit`):
- a per-instance webhook sends the headers configured on `/webhook/set` as they are, so
  `X-Webhook-Secret: <webhook_secret>` works;
- if those headers hold `jwt_key`, it sends `Authorization: Bearer <JWT>` instead, HS256-signed with
  that key (`generateJwtToken`: `{iat, exp: iat + 600, app: "evolution", action: "webhook"}`). The
  token is made once, before the retry loop (`retryWebhookRequest`, up to 10 tries over ~20 min),
  so it is accepted up to `jwt_grace_seconds` past `exp`; a token without `exp` is refused;
- the global webhook (`WEBHOOK_GLOBAL_URL`) sends no custom header at all. Its body carries
  `apikey`: the instance's token when `AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=true`, else null
  (`src/api/services/channel.service.ts` `sendDataWebhook`). A body `apikey` equal to the instance's
  `api_key` authenticates a request that brings neither header.
Secrets are compared in constant time; the JWT is verified by PyJWT, HS256 only.
"""

from __future__ import annotations

import hmac
import warnings
from collections.abc import Iterable, Mapping
from typing import Any

import jwt

from core.errors import Unauthorized

SECRET_HEADER = "X-Webhook-Secret"  # noqa: S105  # a header name, not a secret
ALGORITHMS = ["HS256"]  # what Evolution signs with; naming it here refuses `none` and every other alg
# the key is the instance's webhook_secret, whose length is the configuration's business: a warning
# on every webhook of an instance with a short one would only flood the logs
warnings.filterwarnings("ignore", category=jwt.InsecureKeyLengthWarning)


def jwt_problem(token: str, secret: str, grace_seconds: float) -> str | None:
    """None when `token` is an HS256 JWT signed with `secret`, with an `exp` at most
    `grace_seconds` ago; else what is wrong."""
    try:
        jwt.decode(token, secret, algorithms=ALGORITHMS, options={"require": ["exp"]}, leeway=grace_seconds)
    except jwt.MissingRequiredClaimError:
        return "the JWT has no exp claim"
    except jwt.ExpiredSignatureError:
        return "the JWT has expired"
    except jwt.InvalidSignatureError:
        return "the JWT signature does not match the instance's webhook secret"
    except jwt.InvalidAlgorithmError:
        return "the JWT must be signed with HS256"
    except jwt.ImmatureSignatureError:
        return "the JWT is not valid yet"
    except (jwt.DecodeError, RecursionError):  # `[[[[...` fits in a header and json recurses on it
        return "the bearer token is not a well-formed JWT"
    except jwt.InvalidTokenError as exc:
        return f"the JWT is not valid: {exc}"
    return None


def _same(given: str, expected: str) -> bool:
    return hmac.compare_digest(given.encode(), expected.encode())


def _bearer(headers: Mapping[str, str]) -> str | None:
    """The token of an `Authorization: Bearer <token>` header; None without one."""
    auth = headers.get("Authorization", "")
    return auth[7:].strip() if auth[:7].lower() == "bearer " else None


def header_credential(headers: Mapping[str, str]) -> bool:
    """The request brings a secret header or a bearer token (a per-instance webhook)."""
    return headers.get(SECRET_HEADER) is not None or _bearer(headers) is not None


def credential_secret(headers: Mapping[str, str], secrets: Iterable[str], grace_seconds: float) -> str | None:
    """The instance secret the request's secret header or JWT was made with (which instance, the body
    will say); None when it is none of them. For a large body, checked before it is read."""
    given = headers.get(SECRET_HEADER)
    if given is not None:
        return next((secret for secret in secrets if _same(given, secret)), None)
    token = _bearer(headers)
    if token is None:
        return None
    return next((secret for secret in secrets if jwt_problem(token, secret, grace_seconds) is None), None)


def credential_problem(headers: Mapping[str, str]) -> str:
    """Why a header credential that `credential_secret` matched to no instance is refused."""
    if headers.get(SECRET_HEADER) is not None:
        return f"{SECRET_HEADER} matches no configured instance's webhook secret"
    return "the JWT is not signed with any configured instance's webhook secret, or has expired"


def authenticate(
    headers: Mapping[str, str], secret: str, *, body_apikey: Any, api_key: str, grace_seconds: float,
) -> str:
    """How the request proved it comes from the instance's Evolution (`header`, `jwt` or `apikey`);
    Unauthorized (401) when it did not."""
    given = headers.get(SECRET_HEADER)
    if given is not None and _same(given, secret):
        return "header"
    token = _bearer(headers)
    problem = None
    if token is not None:
        problem = jwt_problem(token, secret, grace_seconds)
        if problem is None:
            return "jwt"
    if given is not None:
        raise Unauthorized(f"{SECRET_HEADER} does not match the instance's webhook secret", code="invalid_secret")
    if problem is not None:
        raise Unauthorized(code="invalid_token", detail=problem)
    if isinstance(body_apikey, str) and body_apikey:
        if api_key and _same(body_apikey, api_key):
            return "apikey"
        raise Unauthorized(code="invalid_apikey", detail="the body's apikey is not the instance's api_key")
    raise Unauthorized(
        f"send {SECRET_HEADER}: <webhook_secret>, or Authorization: Bearer <HS256 JWT signed with it>; "
        "Evolution's global webhook authenticates by the body's apikey, which it sends only with "
        "AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=true",
        code="missing_secret",
    )
