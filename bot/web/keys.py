"""Typed keys for what the application object carries (shared by the app and its routes)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.context import AppContext
from bot.services.health.checks import HealthService
from bot.services.intake.events import EventService
from bot.web.metrics import Metrics

MAX_BODY_BYTES = 256 * 1024

CONTEXT = web.AppKey("context", AppContext)
EVENTS = web.AppKey("events", EventService)
HEALTH = web.AppKey("health", HealthService)
METRICS = web.AppKey("metrics", Metrics)
# Work that outlives its request (webhook deliveries), awaited on shutdown.
BACKGROUND: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("background")
