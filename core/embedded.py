"""The embedded PostgreSQL used when `DATABASE_URL` is unset.

`pgserver` keeps one server per data directory: a second qualibot process pointed at the same
directory attaches to the running server (pgserver records the attached pids beside the data)
and the last process to detach stops it. Postgres refuses to run as root; pgserver handles that
by running the server as its own system user.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

from core.errors import Permanent


class EmbeddedDatabaseError(Permanent):
    """The embedded server could not be started in the data directory."""


class EmbeddedPostgres:
    """A handle on the data directory's server; `close()` detaches (and stops it if last)."""

    def __init__(self, data_dir: Path) -> None:
        self.pgdata = (data_dir / "pgdata").resolve()
        self._server: Any = None

    def start(self) -> str:
        """Start or attach to the server; returns an asyncpg-compatible DSN."""
        self.pgdata.parent.mkdir(parents=True, exist_ok=True)
        with warnings.catch_warnings():
            # platformdirs warns when XDG_RUNTIME_DIR is unset, which is normal on servers
            warnings.simplefilter("ignore")
            import pgserver

            try:
                self._server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported, not in __all__
                    self.pgdata, cleanup_mode="stop"
                )
            except Exception as exc:  # pgserver raises bare exceptions from initdb/pg_ctl
                raise EmbeddedDatabaseError(f"cannot start embedded PostgreSQL in {self.pgdata}: {exc}") from exc
        dsn: str = self._server.get_uri()
        return dsn

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
