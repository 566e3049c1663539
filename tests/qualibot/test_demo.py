"""`qualibot demo` from a clean data directory ends with three successful CAPI events."""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


async def test_demo_sends_lead_registration_and_schedule(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["QUALIBOT_DATA_DIR"] = str(tmp_path / "data")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "qualibot", "demo", cwd=ROOT, env=env,
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), timeout=120)
    text = out.decode()
    assert proc.returncode == 0, text + err.decode()[-2000:]
    for name in ("Lead", "CompleteRegistration", "Schedule"):
        assert any(name in line and "success" in line for line in text.splitlines()), text
    assert "demo complete" in text
    assert (tmp_path / "data" / "demo" / "pgdata").is_dir()  # the embedded database, not DATABASE_URL
