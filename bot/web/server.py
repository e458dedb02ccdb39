"""Serving the API application on CONDUCTOR_HTTP_HOST:CONDUCTOR_HTTP_PORT."""

from __future__ import annotations

import json
import logging
import socket
from typing import Any

from aiohttp import web
from aiohttp.web_protocol import RequestHandler

from bot.web.app import create_app
from bot.wiring import Services

log = logging.getLogger(__name__)

# In-flight requests get this long to finish when the process is asked to stop.
SHUTDOWN_GRACE_SECONDS = 10.0
# A connection has this long to deliver a request's complete headers (from when it opens or
# its previous answer went out), and an idle keep-alive connection is closed after it:
# aiohttp's keep-alive timer closes a connection still waiting for a whole request. A client
# that trickles its headers (slow loris) is cut here; its body has guard.BODY_TIMEOUT.
HEADER_TIMEOUT_SECONDS = 5.0
# After an answer that did not need the whole body (a 408, 413 or 401), the rest of it is read
# and dropped for at most this long, so the client can read the answer, then the connection
# is closed.
LINGER_SECONDS = 2.0


class _JsonErrorsHandler(RequestHandler):
    """aiohttp's connection handler, whose own errors (a request it cannot parse: a bad
    request line, a header over 8 KiB) answer JSON like every other error instead of echoing
    the request in text/plain, and are logged without a traceback: they are the client's."""

    def handle_error(
        self,
        request: Any,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        log.debug("unparseable request from %s: %s", request.remote, type(exc).__name__)
        if request.writer.output_size > 0:
            raise ConnectionError("the answer had started; the connection is closed")
        body = {
            "error": "invalid_request" if status < 500 else "internal",
            "message": "the request could not be parsed as HTTP/1.1"
            if status < 500
            else "internal error",
        }
        response = web.Response(
            status=status, text=json.dumps(body), content_type="application/json"
        )
        response.force_close()
        return response


class _JsonErrorsServer(web.Server):
    def __call__(self) -> RequestHandler:
        return _JsonErrorsHandler(self, loop=self._loop, **self._kwargs)


class ApiRunner(web.AppRunner):
    """An AppRunner whose connections are handled by `_JsonErrorsHandler` (aiohttp has no
    public hook for the handler class; the server it builds is adopted as it is)."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        server.__class__ = _JsonErrorsServer
        return server


def listen_problem(host: str, port: int) -> str | None:
    """Why the API could not listen on host:port (a port in use, an address this machine does
    not have), or None. Asked before anything else starts, so the answer comes at once."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        for family, kind, proto, _, address in infos:
            with socket.socket(family, kind, proto) as probe:
                probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                probe.bind(address)
    except OSError as exc:
        why = exc.strerror or type(exc).__name__
        return (
            f"cannot listen on {host}:{port} ({why}); set CONDUCTOR_HTTP_PORT to a free port "
            "(or CONDUCTOR_HTTP_HOST to an address of this machine)"
        )
    return None


class ApiServer:
    def __init__(self, services: Services) -> None:
        self.context = services.context
        self.runner = ApiRunner(
            create_app(services),
            access_log=None,
            keepalive_timeout=HEADER_TIMEOUT_SECONDS,
            lingering_time=LINGER_SECONDS,
            shutdown_timeout=SHUTDOWN_GRACE_SECONDS,
        )

    async def start(self) -> None:
        settings = self.context.settings
        await self.runner.setup()
        site = web.TCPSite(self.runner, settings.http_host, settings.http_port)
        await site.start()

    async def stop(self) -> None:
        """Stop accepting connections and drain the requests in flight."""
        await self.runner.cleanup()
