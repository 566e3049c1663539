"""One directory for every proof scenario of a run, so the security test can scan all their logs."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def proof_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("proof")


@pytest.fixture
def workdir(proof_dir: Path, request: pytest.FixtureRequest) -> Path:
    """This scenario's directory (its service logs end up there)."""
    path: Path = proof_dir / str(request.node.name)[:60]
    path.mkdir()
    return path
