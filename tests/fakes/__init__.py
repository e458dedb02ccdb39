"""Local stand-ins for Discord, GitHub, Anthropic and Kubernetes, speaking their HTTP APIs."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application) -> tuple[web.AppRunner, int]:
    """Serve `app` on a free loopback port: the runner (to clean up) and the port."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    return runner, int(runner.addresses[0][1])
