"""Helpers for the hostile-input suite: a raw HTTP/1.1 client (bytes the polite clients refuse
to send: non-ASCII header values, bodies that never finish), and the API served by the real
`ApiServer` (its runner settings: header timeout, JSON parser errors)."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import pytest

from bot.context import AppContext
from bot.web.server import ApiServer
from bot.wiring import Services

# The exact bodies the agent runtime sends (src/heartbeat.js, src/conductor.js of
# Stig-Johnny/automate-e), with their one header: Content-Type: application/json.
HEARTBEAT = (
    '{"type":"HEARTBEAT","agentId":"dev-e-1","status":"working","currentIssue":12,'
    '"currentRepo":"acme/app","activeProvider":null,"availableProviders":[],"providers":[],'
    '"integrations":[]}'
)
JSON = {"Content-Type": "application/json"}


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes


def request_bytes(
    method: str, path: str, body: bytes = b"", headers: dict[str, Any] | None = None
) -> bytes:
    """An HTTP/1.1 request as bytes; header values may be bytes (sent as they are)."""
    lines = [f"{method} {path} HTTP/1.1".encode(), b"Host: 127.0.0.1", b"Connection: close"]
    for name, value in (headers or {}).items():
        raw = value if isinstance(value, bytes) else str(value).encode()
        lines.append(name.encode() + b": " + raw)
    if body or method in ("POST", "PUT"):
        lines.append(f"Content-Length: {len(body)}".encode())
    return b"\r\n".join(lines) + b"\r\n\r\n" + body


def parse_response(data: bytes) -> RawResponse:
    head, _, body = data.partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return RawResponse(int(status_line.split()[1]), headers, body)


async def raw_request(port: int, data: bytes, timeout: float = 15.0) -> RawResponse:
    """Send bytes and read one answer (its headers, then Content-Length bytes or up to EOF)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(data)
        await writer.drain()
        async with asyncio.timeout(timeout):
            head = await reader.readuntil(b"\r\n\r\n")
            response = parse_response(head)
            length = response.headers.get("content-length")
            if length is None:
                response.body = await reader.read(-1)
            else:
                response.body = await reader.readexactly(int(length))
    finally:
        writer.close()
    return response


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[int]]]:
    """Start the real ApiServer for a context on a free loopback port; returns the port."""
    servers: list[ApiServer] = []

    async def start(make_context: Callable[..., AppContext], env: dict[str, str] | None = None):
        port = free_port()
        context = make_context(
            {"CONDUCTOR_HTTP_HOST": "127.0.0.1", "CONDUCTOR_HTTP_PORT": str(port), **(env or {})}
        )
        server = ApiServer(Services.build(context))
        await server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        await server.stop()
