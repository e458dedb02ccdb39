"""Typed keys for what the application object carries (shared by the app and its routes)."""

from __future__ import annotations

import asyncio

from aiohttp import web

from bot.context import AppContext
from bot.web.metrics import Metrics
from bot.wiring import Services

MAX_BODY_BYTES = 256 * 1024

CONTEXT = web.AppKey("context", AppContext)
SERVICES = web.AppKey("services", Services)
METRICS = web.AppKey("metrics", Metrics)
# Work that outlives its request (webhook deliveries), awaited on shutdown.
BACKGROUND: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("background")
