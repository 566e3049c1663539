"""Where the domain packages plug in: their routes, their job handlers, and capi's hooks
(`capi.hooks`): a delivery sets the dialog's sent flags (`qualification.dialogs.mark_sent`)."""

from __future__ import annotations

from aiohttp import web

import bot.cloud.routes
import bot.jobs
import bot.routes
import capi.jobs
import crm.jobs
import crm.routes
import qualification.dialogs
import qualification.jobs
from core.context import AppContext
from core.jobs import JobRegistry
from qualibot.reports import merge_loop


def add_domain_routes(app: web.Application) -> None:
    bot.routes.add_routes(app)
    bot.cloud.routes.add_routes(app)
    crm.routes.add_routes(app)


def job_registry() -> JobRegistry[AppContext]:
    registry: JobRegistry[AppContext] = JobRegistry()
    bot.jobs.register_jobs(registry)
    crm.jobs.register_jobs(registry)
    qualification.jobs.register_jobs(registry)
    capi.jobs.register_jobs(registry, delivered=qualification.dialogs.mark_sent)
    registry.register_loop("report.funnel_merge", merge_loop)
    return registry
