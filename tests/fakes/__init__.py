"""Local stand-ins for Discord, GitHub, Anthropic and Kubernetes, speaking their HTTP APIs."""

from __future__ import annotations

from aiohttp import web


async def serve(app: web.Application, port: int = 0) -> tuple[web.AppRunner, int]:
    """Serve `app` on a loopback port (0: a free one): the runner (to clean up) and the port.
    A given port lets a test start a fake where the application already looks for it."""
    runner = web.AppRunner(app, handle_signals=False, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    return runner, int(runner.addresses[0][1])
