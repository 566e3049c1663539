"""Job handlers of this package (filled in by its issue)."""

from __future__ import annotations

from core.context import AppContext
from core.jobs import JobRegistry


def register_jobs(registry: JobRegistry[AppContext]) -> None:
    """Register this package's job handlers by name."""
