"""Job handlers of the qualification package, and how other packages ask for a run."""

from __future__ import annotations

from core.context import AppContext
from core.jobs import Executor, JobRegistry, enqueue

QUALIFY_JOB = "qualification.dialog"


async def schedule_qualification(db: Executor, dialog_id: int, *, delay: float = 0.0) -> None:
    """Ask for the dialog to be (re)qualified; a burst of requests coalesces into one run."""
    await enqueue(db, QUALIFY_JOB, {"dialog_id": dialog_id}, key=f"dialog:{dialog_id}", mode="coalesce",
                  delay=delay)


def register_jobs(registry: JobRegistry[AppContext]) -> None:
    """Register this package's job handlers by name (implemented by the qualification issue)."""
