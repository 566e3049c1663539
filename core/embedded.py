"""The embedded PostgreSQL used when `DATABASE_URL` is unset.

`pgserver` keeps one server per data directory: a second qualibot process pointed at the same
directory attaches to the running server (pgserver records the attached pids beside the data)
and the last process to detach stops it. Postgres refuses to run as root; pgserver handles that
by running the server as its own system user.
"""

from __future__ import annotations

import subprocess
import time
import warnings
from pathlib import Path
from typing import Any

from core.errors import Permanent

# pgserver gives `pg_ctl start` 10 s; on a loaded or slow machine the server needs longer. pg_ctl
# giving up does not stop the server, so a later attempt attaches to it and waits until it is ready.
START_ATTEMPTS = 3
READY_SECONDS = 60.0


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

            for attempt in range(1, START_ATTEMPTS + 1):
                try:
                    self._server = pgserver.get_server(  # type: ignore[attr-defined]  # re-exported, not in __all__
                        self.pgdata, cleanup_mode="stop"
                    )
                    break
                except subprocess.TimeoutExpired as exc:
                    if attempt == START_ATTEMPTS:
                        raise EmbeddedDatabaseError(
                            f"embedded PostgreSQL in {self.pgdata} did not start in time: {exc}") from exc
                except Exception as exc:  # pgserver raises bare exceptions from initdb/pg_ctl
                    raise EmbeddedDatabaseError(f"cannot start embedded PostgreSQL in {self.pgdata}: {exc}") from exc
            self._wait_ready()
        dsn: str = self._server.get_uri()
        return dsn

    def _wait_ready(self) -> None:
        # an attached server may still be starting (after a pg_ctl timeout, or another process's start)
        from pgserver.utils import PostmasterInfo

        deadline = time.monotonic() + READY_SECONDS
        while True:
            info = PostmasterInfo.read_from_pgdata(self.pgdata)
            if info is not None and info.status == "ready":
                return
            if time.monotonic() > deadline:
                raise EmbeddedDatabaseError(
                    f"embedded PostgreSQL in {self.pgdata} is not ready after {READY_SECONDS:.0f} s")
            time.sleep(0.2)

    def close(self) -> None:
        if self._server is not None:
            self._server.cleanup()
            self._server = None
