"""Evolution webhook authentication (pure functions): the secret header, the `jwt_key` JWT, the body apikey.

Tokens are signed as Evolution signs them: evolution-api 2.3.7 / 2.4.0-rc2
`src/api/integrations/event/webhook/webhook.controller.ts` `generateJwtToken`
(`jwt.sign({iat, exp: iat + 600, app: 'evolution', action: 'webhook'}, key, {algorithm: 'HS256'})`).
"""

from __future__ import annotations

import base64
import json
import time

import jwt as pyjwt
import pytest

from bot.auth import authenticate, jwt_problem
from core.errors import Unauthorized
from tests.bot.test_webhook import jwt
from tests.fakes.evolution import evolution_jwt

SECRET = "s3cret-key-of-the-instance-0123456789"
API_KEY = "9D88E4A5-C33A-4BE4-8587-333689F09235"
GRACE = 1800.0


def ok(token: str) -> str | None:
    return jwt_problem(token, SECRET, GRACE)


def test_evolution_token_is_accepted() -> None:
    assert ok(evolution_jwt(SECRET)) is None


def test_a_retry_reuses_the_token_until_the_grace_runs_out() -> None:
    # Evolution signs once before its retry loop (5 s doubling to 300 s, 10 tries: ~20 minutes)
    signed_20_min_ago = evolution_jwt(SECRET, now=time.time() - 20 * 60)  # exp 10 minutes ago
    assert ok(signed_20_min_ago) is None
    signed_45_min_ago = evolution_jwt(SECRET, now=time.time() - 45 * 60)  # exp 35 minutes ago
    assert ok(signed_45_min_ago) == "the JWT has expired"
    assert jwt_problem(signed_20_min_ago, SECRET, 0) == "the JWT has expired"


def test_a_token_without_exp_is_refused() -> None:
    token = pyjwt.encode({"iat": int(time.time()), "app": "evolution"}, SECRET, "HS256")
    assert ok(token) == "the JWT has no exp claim"


def test_tampered_claims_fail_the_signature() -> None:
    head, _, sig = evolution_jwt(SECRET).split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"exp": time.time() + 10**6}).encode()).rstrip(b"=").decode()
    assert "signature" in str(ok(f"{head}.{forged}.{sig}"))
    assert "signature" in str(jwt_problem(evolution_jwt("another-instance-secret-0123456789"), SECRET, GRACE))


@pytest.mark.parametrize("token", [
    "a.b", "!!!.###.$$$", "not-a-jwt",
    jwt(SECRET, {"exp": time.time() + 600}, alg="none"),
    jwt(SECRET, {"exp": time.time() + 600}, alg="HS384"),
    pyjwt.encode({"exp": int(time.time()) + 600}, SECRET, "HS512"),
])
def test_malformed_or_other_algorithms_are_refused(token: str) -> None:
    assert ok(token) is not None


def auth(headers: dict[str, str], body_apikey: object = None) -> str:
    return authenticate(headers, SECRET, body_apikey=body_apikey, api_key=API_KEY, grace_seconds=GRACE)


def test_header_secret_bearer_or_body_apikey() -> None:
    assert auth({"X-Webhook-Secret": SECRET}) == "header"
    assert auth({"Authorization": "bearer " + evolution_jwt(SECRET)}) == "jwt"
    assert auth({}, body_apikey=API_KEY) == "apikey"  # the global webhook: no header at all


@pytest.mark.parametrize(("headers", "apikey", "code"), [
    ({"X-Webhook-Secret": SECRET + "x"}, API_KEY, "invalid_secret"),  # a header, once sent, must be right
    ({"Authorization": "Bearer " + evolution_jwt("wrong-key-0123456789abcdef")}, API_KEY, "invalid_token"),
    ({}, API_KEY + "x", "invalid_apikey"),
    ({}, "Apikey not found", "invalid_apikey"),  # what Evolution sends for an instance without a token
    ({}, None, "missing_secret"),  # AUTHENTICATION_EXPOSE_IN_FETCH_INSTANCES=false: apikey is null
    ({}, {"apikey": API_KEY}, "missing_secret"),
])
def test_wrong_or_missing_credentials(headers: dict[str, str], apikey: object, code: str) -> None:
    with pytest.raises(Unauthorized) as err:
        auth(headers, body_apikey=apikey)
    assert err.value.code == code
