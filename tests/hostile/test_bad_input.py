"""The Medium findings: bad input was a 500 with a traceback in the log. Each is replayed
here and must be a 4xx JSON answer, store nothing, and log no traceback."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable, Iterator

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bot.context import AppContext
from store.events import EventStore
from tests.hostile.conftest import HEARTBEAT, JSON, raw_request, request_bytes
from tests.waiting import wait_until


@pytest.fixture
def no_traceback(caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """The client's mistakes are not logged as errors, with or without a traceback."""
    with caplog.at_level(logging.DEBUG):
        yield
    loud = [r for r in caplog.records if r.levelno >= logging.ERROR or r.exc_info]
    assert not loud, [r.getMessage() for r in loud]


def deep(levels: int) -> str:
    return (
        '{"type":"HEARTBEAT","agentId":"dev-e-1","status":"x","n":'
        + "[" * levels
        + "]" * levels
        + "}"
    )


BAD_BODIES = {
    "nested 1,000 deep": deep(1000),
    "nested 100,000 deep": deep(100_000),
    "an integer of 5,000 digits": HEARTBEAT[:-1] + ',"n":' + "9" * 5000 + "}",
    "a lone surrogate": HEARTBEAT[:-1] + ',"n":"\\ud800"}',
    "a lone surrogate in a key": HEARTBEAT[:-1] + ',"\\udc00":1}',
    "a NUL": HEARTBEAT[:-1] + ',"n":"a\\u0000b"}',
    "NaN": HEARTBEAT[:-1] + ',"n":NaN}',
    "Infinity": HEARTBEAT[:-1] + ',"n":-Infinity}',
    "1e400": HEARTBEAT[:-1] + ',"n":1e400}',
    "not UTF-8": HEARTBEAT[:-1].encode() + b',"n":"\xff\xfe"}',
}


@pytest.mark.parametrize("name", sorted(BAD_BODIES))
async def test_bad_bodies_are_a_400_and_store_nothing(
    api: TestClient, store: EventStore, no_traceback: None, name: str
) -> None:
    response = await api.post("/api/events", data=BAD_BODIES[name], headers=JSON)
    assert response.status == 400, await response.text()
    assert (await response.json())["error"] == "invalid_request"
    assert await store.head_position() == 0


@pytest.mark.parametrize(
    "path",
    [
        "/api/events/stream?id=%00",
        "/api/queue?repo=%00",
        "/api/issues?state=%00",
        "/dashboard/events?lastEventId=99999999999999999999999",
        "/dashboard/events?lastEventId=-1",
        "/api/agents/dev-e-1%0a",
        "/api/assignments/next?agentId=dev-e-1%0a",
    ],
)
async def test_bad_query_values_are_a_400(
    api: TestClient, store: EventStore, no_traceback: None, path: str
) -> None:
    response = await api.get(path)
    assert response.status == 400, await response.text()
    assert "error" in await response.json()
    assert await store.head_position() == 0


@pytest.mark.parametrize(
    ("header", "value"),
    [
        ("Authorization", b"Bearer \xff\xfe"),
        ("X-Request-Id", b"\xff\xfe"),
        ("Idempotency-Key", b"\xc3\xa9t\xc3\xa9"),
        ("Idempotency-Key", b"\xff"),
    ],
)
async def test_header_values_that_are_not_ascii_are_a_400(
    api: TestClient, store: EventStore, no_traceback: None, header: str, value: bytes
) -> None:
    assert api.server.port is not None
    answer = await raw_request(
        api.server.port,
        request_bytes("POST", "/api/events", HEARTBEAT.encode(), {**JSON, header: value}),
    )
    assert answer.status == 400, answer
    assert json.loads(answer.body)["error"] == "invalid_request"
    assert await store.head_position() == 0


async def test_a_non_ascii_dashboard_cookie_is_no_error(
    api: TestClient, no_traceback: None
) -> None:
    assert api.server.port is not None
    answer = await raw_request(
        api.server.port,
        request_bytes(
            "GET", "/dashboard/api/agents", headers={"Cookie": b"conductor_dashboard=\xff\xfe"}
        ),
    )
    assert answer.status == 200, answer


@pytest.mark.parametrize("served_by", ["ApiServer", "TestServer"])
async def test_a_client_that_goes_away_mid_body_is_no_error(
    api: TestClient,
    serve: Callable[..., Awaitable[int]],
    make_context: Callable[..., AppContext],
    store: EventStore,
    no_traceback: None,
    served_by: str,
) -> None:
    """Served by `conductor-e run` (ApiServer: the handler sees the connection reset) and by
    aiohttp's test server (which cancels the handler instead): a 499 either way."""
    port = await serve(make_context) if served_by == "ApiServer" else api.server.port
    assert port is not None
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = request_bytes("POST", "/api/events", b"", {**JSON, "Expect": "100-continue"})
    writer.write(head.replace(b"Content-Length: 0", f"Content-Length: {len(HEARTBEAT)}".encode()))
    await writer.drain()
    # "100 Continue" goes out when the request reaches its route: the server now reads the body.
    async with asyncio.timeout(10):
        assert (await reader.readline()).startswith(b"HTTP/1.1 100")
    writer.write(HEARTBEAT[:20].encode())
    await writer.drain()
    writer.close()
    await writer.wait_closed()

    async def counted() -> str:
        async with (
            aiohttp.ClientSession() as http,
            http.get(f"http://127.0.0.1:{port}/metrics") as response,
        ):
            text = await response.text()
        return "\n".join(line for line in text.splitlines() if 'route="/api/events"' in line)

    lines = await wait_until(
        counted,
        ok=lambda lines: 'status="499"' in lines,
        timeout=10,
        what="a 499 counted",
        interval=0.05,  # the server notices the closed socket on its own time
    )
    assert 'status="500"' not in lines
    assert await store.head_position() == 0


@pytest.mark.parametrize("header", ["X-Request-Id", "Idempotency-Key"])
async def test_headers_kept_with_the_event_are_bounded(
    api: TestClient, store: EventStore, header: str
) -> None:
    response = await api.post("/api/events", data=HEARTBEAT, headers={**JSON, header: "x" * 201})
    assert response.status == 400
    assert header in (await response.json())["message"]
    assert await store.head_position() == 0
