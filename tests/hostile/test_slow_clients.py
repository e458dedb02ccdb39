"""A request whose headers or body never finished was held 150 s with no answer. Served by
the real ApiServer (its runner's settings are what cut a slow client), over a raw socket."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import aiohttp
import pytest

from bot.context import AppContext
from bot.web.guard import BODY_TIMEOUT
from bot.web.server import HEADER_TIMEOUT_SECONDS, LINGER_SECONDS
from tests.hostile.conftest import HEARTBEAT, JSON, parse_response, request_bytes

pytestmark = pytest.mark.slow


async def until_closed(reader: asyncio.StreamReader, within: float) -> tuple[bytes, float]:
    """Everything the server sends until it closes the connection, and when it closed it
    (seconds from now; TimeoutError past `within`)."""
    started = time.monotonic()
    async with asyncio.timeout(within):
        data = await reader.read(-1)
    return data, time.monotonic() - started


async def test_slow_headers_and_slow_bodies_are_cut_and_others_are_served(
    serve: Callable[..., Awaitable[int]], make_context: Callable[..., AppContext]
) -> None:
    port = await serve(make_context)

    # Headers trickled one byte at a time, never finished (slow loris).
    loris_reader, loris = await asyncio.open_connection("127.0.0.1", port)
    loris.write(b"POST /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\nX-A: ")

    async def trickle() -> None:
        while not loris.is_closing():
            loris.write(b"a")
            await asyncio.sleep(0.2)  # the trickle itself is the test's input

    # Headers complete, the body promised but never sent in full.
    body_reader, body_writer = await asyncio.open_connection("127.0.0.1", port)
    head = request_bytes("POST", "/api/events", b"", JSON)
    body_writer.write(head.replace(b"Content-Length: 0", b"Content-Length: 500"))
    body_writer.write(HEARTBEAT[:40].encode())

    # An idle connection that never sends a byte.
    idle_reader, idle = await asyncio.open_connection("127.0.0.1", port)

    trickling = asyncio.create_task(trickle())
    try:
        # Meanwhile everyone else is served at once.
        async with (
            aiohttp.ClientSession() as http,
            http.post(f"http://127.0.0.1:{port}/api/events", data=HEARTBEAT, headers=JSON) as r,
        ):
            assert r.status == 200
        limit = max(HEADER_TIMEOUT_SECONDS, BODY_TIMEOUT) + 5
        loris_answer, body_answer, idle_answer = await asyncio.gather(
            until_closed(loris_reader, limit),
            until_closed(body_reader, limit),
            until_closed(idle_reader, limit),
        )
    finally:
        trickling.cancel()
        for writer in (loris, body_writer, idle):
            writer.close()
    # Cut without an answer (they never made a request) once HEADER_TIMEOUT_SECONDS passed.
    for data, closed_after in (loris_answer, idle_answer):
        assert data == b""
        assert closed_after < HEADER_TIMEOUT_SECONDS + 3
    data, closed_after = body_answer
    answer = parse_response(data)
    assert answer.status == 408
    assert b"request_timeout" in answer.body
    assert closed_after < BODY_TIMEOUT + LINGER_SECONDS + 3
