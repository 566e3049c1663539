"""Scenario 6: missing or wrong credentials on every route → 401/403 (unknown instance or
connection → 404), oversized bodies → 413, nothing written; no token, secret or full phone number
in the logs of this scenario's process nor of any scenario that ran before it in this session."""

from __future__ import annotations

from pathlib import Path

from tests.proof.security import logs_under, run_security


async def test_credentials_body_limit_and_logs(workdir: Path, proof_dir: Path) -> None:
    earlier = logs_under(proof_dir, excluding=workdir)
    report = await run_security(workdir, earlier)
    print(report.render())
    assert not report.problems, report.render()
