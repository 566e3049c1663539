"""`qualibot serve [--no-workers]` and `qualibot worker`."""

from __future__ import annotations

import argparse
import asyncio
import gc
import signal
from typing import Any

from aiohttp import web

from core.context import AppContext, make_llm
from core.db import UNAVAILABLE_ERRORS, open_pool
from core.logging import get_logger
from core.migrate import MigrationError, check_current
from core.settings import Settings
from core.web import CTX
from qualibot.app import create_app, running_worker
from qualibot.cli import CliError
from qualibot.doctor import load, unlisted_names, unlisted_names_message
from qualibot.secret_values import secrets_kept_current

log = get_logger("qualibot.serve")


def add_parser(sub: Any) -> None:
    p: argparse.ArgumentParser = sub.add_parser("serve")
    p.add_argument("--no-workers", action="store_true", help="HTTP only; run `qualibot worker` elsewhere")
    p.set_defaults(func=run_serve)
    w: argparse.ArgumentParser = sub.add_parser("worker")
    w.set_defaults(func=run_worker)


async def _check_schema(settings: Settings) -> None:
    try:
        async with open_pool(settings, max_size=1) as pool, pool.acquire() as conn:
            await check_current(conn)
    except MigrationError as exc:
        raise CliError(str(exc)) from None
    except UNAVAILABLE_ERRORS as exc:
        raise CliError(f"database unavailable: {type(exc).__name__}: {exc}") from None


async def run_serve(args: argparse.Namespace, settings: Settings) -> int:
    if settings.database_url:
        await _check_schema(settings)
    app = create_app(settings, with_workers=not args.no_workers)
    app.on_startup.append(_warn_unlisted_event_names)  # runs after the app's pool is open
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    try:
        site = web.TCPSite(runner, settings.host, settings.port)
        await site.start()
        # startup's objects (modules, settings, the app) live as long as the process: keep them out
        # of the collector's full passes, which otherwise walk them again and again under load
        gc.freeze()
        log.info("serve.listening", host=settings.host, port=settings.port, workers=not args.no_workers)
        print(f"qualibot listening on http://{settings.host}:{settings.port}", flush=True)
        await _until_signal()
        log.info("serve.stopping")
    finally:
        await runner.cleanup()  # stops the workers, letting in-flight jobs finish within the grace period
    return 0


async def _warn_unlisted_event_names(app: web.Application) -> None:
    """One warning per enabled direction whose event names Meta is likely to refuse (as doctor says)."""
    dirs, _ = await load(app[CTX].pool)
    for d in dirs:
        if d.capi_enabled and unlisted_names(d) and not d.allow_unlisted_event_names:
            log.warning("serve.unlisted_event_names", direction=d.id, detail=unlisted_names_message(d))


async def run_worker(args: argparse.Namespace, settings: Settings) -> int:
    import aiohttp

    if settings.database_url:
        await _check_schema(settings)
    async with open_pool(settings) as pool, aiohttp.ClientSession() as http:
        ctx = AppContext(settings=settings, pool=pool, http=http, llm=make_llm(settings))
        async with secrets_kept_current(pool, settings), running_worker(ctx):
            print("qualibot worker running", flush=True)
            await _until_signal()
        if ctx.llm is not None:
            await ctx.llm.close()
    return 0


async def _until_signal() -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
