"""Typed keys for what the application object carries (shared by app, routes and metrics)."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from aiohttp import web

from bot.context import AppContext
from bot.wiring import Services

if TYPE_CHECKING:
    from bot.web.metrics import Metrics

MAX_BODY_BYTES = 256 * 1024

CONTEXT = web.AppKey("context", AppContext)
SERVICES = web.AppKey("services", Services)
METRICS: web.AppKey[Metrics] = web.AppKey("metrics")
# Work that outlives its request (webhook deliveries), awaited on shutdown.
BACKGROUND: web.AppKey[set[asyncio.Task[object]]] = web.AppKey("background")
