"""HS256 JWT verification for Evolution's `jwt_key` webhooks (pure functions)."""

from __future__ import annotations

import base64
import json

import pytest

from bot.auth import CLOCK_LEEWAY, authenticate, jwt_problem
from core.web import ApiError
from tests.bot.test_webhook import jwt

SECRET = "s3cret-key"
NOW = 1_771_373_400.0
EVOLUTION_CLAIMS = {"iat": int(NOW), "exp": int(NOW) + 600, "app": "evolution", "action": "webhook"}


def test_evolution_token_is_accepted() -> None:
    assert jwt_problem(jwt(SECRET, EVOLUTION_CLAIMS), SECRET, now=NOW) is None


def test_expiry_allows_a_little_clock_difference() -> None:
    token = jwt(SECRET, {"exp": NOW - CLOCK_LEEWAY / 2})
    assert jwt_problem(token, SECRET, now=NOW) is None
    assert jwt_problem(jwt(SECRET, {"exp": NOW - 2 * CLOCK_LEEWAY}), SECRET, now=NOW) == "the JWT has expired"


def test_not_before_in_the_future_is_refused() -> None:
    assert jwt_problem(jwt(SECRET, {"nbf": NOW + 3600}), SECRET, now=NOW) == "the JWT is not valid yet"


def test_tampered_claims_fail_the_signature() -> None:
    head, _, sig = jwt(SECRET, EVOLUTION_CLAIMS).split(".")
    forged = base64.urlsafe_b64encode(json.dumps({"exp": NOW + 10**6}).encode()).rstrip(b"=").decode()
    assert "signature" in str(jwt_problem(f"{head}.{forged}.{sig}", SECRET, now=NOW))


@pytest.mark.parametrize("token", [
    "a.b", "!!!.###.$$$", jwt(SECRET, EVOLUTION_CLAIMS, alg="none"), jwt(SECRET, EVOLUTION_CLAIMS, alg="HS384"),
])
def test_malformed_or_other_algorithms_are_refused(token: str) -> None:
    assert jwt_problem(token, SECRET, now=NOW) is not None


def test_header_secret_or_bearer_either_works() -> None:
    authenticate({"X-Webhook-Secret": SECRET}, SECRET)
    authenticate({"Authorization": "bearer " + jwt(SECRET, {})}, SECRET)
    with pytest.raises(ApiError) as err:
        authenticate({"X-Webhook-Secret": SECRET + "x"}, SECRET)
    assert (err.value.status, err.value.code) == (401, "invalid_secret")
