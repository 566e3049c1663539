"""`qualibot serve` with the intake drain held: for `bench/ingest.py --intake store`.

It measures the webhook's own step (authenticate, parse, store by group commit, answer) apart from
linking (lead, dialog, job), which the drain would do. A benchmark device, never a way to run the
service: messages stay unlinked, so no dialog is ever answered.
"""

import sys

import bot.drain
from core.context import AppContext


async def _held(self: bot.drain.DrainLoop, ctx: AppContext) -> float:
    return 3600.0  # look again in an hour: never during a run


bot.drain.DrainLoop.__call__ = _held  # type: ignore[method-assign]

if __name__ == "__main__":
    from qualibot.cli import main

    sys.argv = ["qualibot", "serve"]
    sys.exit(main())
