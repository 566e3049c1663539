"""Dashboard viewers: the one module that holds `dashboard_viewers`'s SQL.

A viewer is made by `qualibot viewer create` with a one-time login token (only its SHA-256 is
stored). Redeeming it sets a session cookie: a JWT (PyJWT) signed with the viewer's own random key,
checked against the viewer's row on every request, so `qualibot viewer revoke` ends its sessions
in every process at once and no server-wide secret has to be configured.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
import jwt

from core.errors import NotFound
from core.jobs import Executor

LOGIN_VALID = timedelta(days=7)
SESSION_VALID = timedelta(days=30)
_ALGORITHM = "HS256"


@dataclass(frozen=True)
class Viewer:
    id: int
    name: str
    account_id: str | None  # None: an admin viewer, who sees every account

    @property
    def is_admin(self) -> bool:
        return self.account_id is None


class NoSuchAccount(NotFound):
    """A viewer for an account that does not exist."""


def _hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


async def create(db: Executor, account: str | None, name: str) -> tuple[int, str]:
    """A new viewer of `account` (None: admin) and its one-time login token."""
    token = secrets.token_urlsafe(32)
    try:
        viewer_id = await db.fetchval(
            """INSERT INTO dashboard_viewers (account_id, name, login_token_hash, login_expires_at, session_key)
               VALUES ($1, $2, $3, now() + $4::interval, $5) RETURNING id""",
            account, name, _hash(token), LOGIN_VALID, secrets.token_bytes(32))
    except asyncpg.ForeignKeyViolationError:
        raise NoSuchAccount(f"no account {account!r}") from None
    return int(viewer_id), token


async def revoke(db: Executor, viewer_id: int) -> bool:
    """End the viewer's sessions and unused link; False: no such viewer (or already revoked)."""
    done = await db.fetchval(
        """UPDATE dashboard_viewers SET revoked_at = now(), login_token_hash = NULL
           WHERE id = $1 AND revoked_at IS NULL RETURNING id""", viewer_id)
    return done is not None


async def listing(db: Executor) -> list[dict[str, Any]]:
    rows = await db.fetch(
        """SELECT id, coalesce(account_id, '(admin)') AS account, name, created_at, logged_in_at, revoked_at,
                  login_token_hash IS NOT NULL AND login_expires_at > now() AS link_unused
           FROM dashboard_viewers ORDER BY id""")
    return [dict(r) for r in rows]


async def redeem(db: Executor, token: str) -> str | None:
    """Use a login token once: the session cookie's value, or None (unknown, used, expired, revoked)."""
    row = await db.fetchrow(
        """UPDATE dashboard_viewers
           SET login_token_hash = NULL, login_expires_at = NULL, logged_in_at = now()
           WHERE login_token_hash = $1 AND login_expires_at > now() AND revoked_at IS NULL
           RETURNING id, session_key""", _hash(token))
    if row is None:
        return None
    now = datetime.now(UTC)
    return jwt.encode({"sub": str(row["id"]), "iat": now, "exp": now + SESSION_VALID},
                      bytes(row["session_key"]), algorithm=_ALGORITHM)


async def from_session(db: Executor, cookie: str) -> Viewer | None:
    """The viewer a session cookie proves, or None (forged, expired, revoked, deleted)."""
    try:
        claimed = jwt.decode(cookie, options={"verify_signature": False})
        viewer_id = int(claimed["sub"])
    except (jwt.InvalidTokenError, KeyError, TypeError, ValueError):
        return None
    if not 0 < viewer_id < 2**63:
        return None
    row = await db.fetchrow(
        "SELECT id, name, account_id, session_key FROM dashboard_viewers WHERE id = $1 AND revoked_at IS NULL",
        viewer_id)
    if row is None:
        return None
    try:
        jwt.decode(cookie, bytes(row["session_key"]), algorithms=[_ALGORITHM], options={"require": ["exp", "sub"]})
    except jwt.InvalidTokenError:
        return None
    return Viewer(row["id"], row["name"], row["account_id"])
