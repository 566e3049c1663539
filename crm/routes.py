"""HTTP routes of this package (filled in by its issue)."""

from __future__ import annotations

from aiohttp import web


def add_routes(app: web.Application) -> None:
    """Register this package's webhook routes on the app."""
