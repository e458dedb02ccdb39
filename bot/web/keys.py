"""Typed keys for what the application object carries (shared by app, routes and metrics)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from bot.context import AppContext
from bot.services.health.checks import HealthService
from bot.services.intake.events import EventService

if TYPE_CHECKING:
    from bot.web.metrics import Metrics

MAX_BODY_BYTES = 256 * 1024

CONTEXT = web.AppKey("context", AppContext)
EVENTS = web.AppKey("events", EventService)
HEALTH = web.AppKey("health", HealthService)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# Work that outlives its request (webhook deliveries), awaited on shutdown.
BACKGROUND: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("background")
