"""Serving the API application on CONDUCTOR_HTTP_HOST:CONDUCTOR_HTTP_PORT."""

from __future__ import annotations

from aiohttp import web

from bot.context import AppContext
from bot.web.app import create_app

# In-flight requests get this long to finish when the process is asked to stop.
SHUTDOWN_GRACE_SECONDS = 10.0


class ApiServer:
    def __init__(self, context: AppContext) -> None:
        self.context = context
        self.runner = web.AppRunner(create_app(context), access_log=None)

    async def start(self) -> None:
        settings = self.context.settings
        await self.runner.setup()
        site = web.TCPSite(
            self.runner,
            settings.http_host,
            settings.http_port,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )
        await site.start()

    async def stop(self) -> None:
        """Stop accepting connections and drain the requests in flight."""
        await self.runner.cleanup()
