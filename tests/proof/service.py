"""qualibot as the operator runs it: `python -m qualibot serve|worker` subprocesses.

`ServiceProcess` starts one, writes its stdout and stderr to a log file (the security checks
scan those files), waits until it is ready (`/healthz` answers 200 for `serve`, the startup line
for `worker`), and ends it with SIGKILL (a crash) or SIGTERM (a clean stop).
`service_env` builds the environment: small buffer, poll, lease and retry settings so the
scenarios run in seconds; every value can be overridden.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[2]

DEFAULTS = {
    "QUALIBOT_HOST": "127.0.0.1",
    "QUALIBOT_BUFFER_SECONDS": "0.3",
    "QUALIBOT_BUFFER_MAX_SECONDS": "2",
    "QUALIBOT_WORKER_POLL_SECONDS": "0.05",
    "QUALIBOT_WORKER_CONCURRENCY": "8",
    "QUALIBOT_JOB_LEASE_SECONDS": "3",
    "QUALIBOT_CAPI_LEASE_SECONDS": "3",
    "QUALIBOT_CAPI_RETRY_BASE_SECONDS": "0.5",
    "QUALIBOT_CAPI_RETRY_MAX_SECONDS": "4",
    "QUALIBOT_META_TIMEOUT_SECONDS": "1",
    "QUALIBOT_LLM_TIMEOUT_SECONDS": "5",
    "QUALIBOT_SHUTDOWN_GRACE_SECONDS": "2",
    "QUALIBOT_LOG_LEVEL": "info",
    "PYTHONUNBUFFERED": "1",
}
_OURS = ("QUALIBOT_", "OPENAI_", "META_")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def service_env(
    *, database_url: str, data_dir: Path, llm_url: str, llm_key: str, graph_url: str, **overrides: str
) -> dict[str, str]:
    """The process environment: the caller's, minus any qualibot/OpenAI/Meta setting, plus ours."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_OURS) and k != "DATABASE_URL"}
    env.update(DEFAULTS)
    env.update({
        "DATABASE_URL": database_url, "QUALIBOT_DATA_DIR": str(data_dir),
        "OPENAI_API_KEY": llm_key, "OPENAI_BASE_URL": llm_url, "META_GRAPH_URL": graph_url,
    })
    env.update(overrides)
    return env


class ServiceProcess:
    """One `qualibot` process; `start()` may be called again after it died (same port, new log)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], log_dir: Path) -> None:
        self.name = name
        self.argv = argv
        self.port = free_port() if argv[0] == "serve" else None
        self.env = {**env, "QUALIBOT_PORT": str(self.port or 0)}
        self.log_dir = log_dir
        self.logs: list[Path] = []
        self.proc: asyncio.subprocess.Process | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, timeout: float = 60.0) -> None:
        log = self.log_dir / f"{self.name}-{len(self.logs) + 1}.log"
        self.logs.append(log)
        with log.open("wb") as out:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "qualibot", *self.argv, cwd=ROOT, env=self.env,
                stdout=out, stderr=asyncio.subprocess.STDOUT,
            )
        await self._until_ready(log, timeout)

    async def _until_ready(self, log: Path, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession() as http:
            while time.monotonic() < deadline:
                assert self.proc is not None
                if self.proc.returncode is not None:
                    raise RuntimeError(f"{self.name} exited with {self.proc.returncode}:\n{await _tail(log)}")
                if self.port is None:
                    if "worker running" in await _tail(log):
                        return
                else:
                    try:
                        async with http.get(f"{self.url}/healthz") as resp:
                            if resp.status == 200:
                                return
                    except aiohttp.ClientError:
                        pass
                await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} not ready after {timeout}s:\n{await _tail(log)}")

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.returncode is None

    async def kill(self) -> None:
        """SIGKILL: no handler runs, no connection is closed politely, nothing is flushed."""
        if self.running:
            assert self.proc is not None
            self.proc.send_signal(signal.SIGKILL)
            await self.proc.wait()

    async def stop(self, timeout: float = 20.0) -> int | None:
        """SIGTERM and wait; SIGKILL after `timeout`. Returns the exit code."""
        if not self.running:
            return self.proc.returncode if self.proc else None
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        try:
            return await asyncio.wait_for(self.proc.wait(), timeout)
        except TimeoutError:
            await self.kill()
            return self.proc.returncode


async def _tail(log: Path, chars: int = 3000) -> str:
    text = await asyncio.to_thread(log.read_text, encoding="utf-8", errors="replace")
    return text[-chars:]


async def stop_all(processes: list[ServiceProcess]) -> None:
    await asyncio.gather(*(p.stop() for p in processes), return_exceptions=True)
