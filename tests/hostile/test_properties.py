"""Hypothesis over what a hostile client controls: header bytes (non-ASCII, control
characters, lone surrogates as escapes in the body) and bodies (surrogates, NUL, deep
nesting, numbers out of range). Whatever is sent, the answer is a JSON 2xx or 4xx, never a
5xx, and a valid heartbeat sent at the same time by another agent is always stored."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.context import AppContext
from store.events import EventStore
from tests.hostile.conftest import JSON, raw_request, request_bytes

FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Any code point, lone surrogates and NUL included.
TEXT = st.text(st.characters(), max_size=20)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**120), max_value=10**120),
    st.floats(),  # NaN and the infinities included
    TEXT,
)


def nested(depth: int, leaf: Any) -> Any:
    for _ in range(depth):
        leaf = [leaf]
    return leaf


VALUES = st.one_of(
    st.recursive(
        SCALARS,
        lambda children: (
            st.lists(children, max_size=3) | st.dictionaries(TEXT, children, max_size=3)
        ),
        max_leaves=8,
    ),
    st.builds(nested, st.integers(min_value=20, max_value=500), SCALARS),
)


def encode(value: Any) -> bytes:
    """JSON as a careless client writes it: lone surrogates as \\u escapes, NaN as NaN."""
    return json.dumps(value, allow_nan=True).encode()


@st.composite
def bodies(draw: st.DrawFn) -> bytes:
    body: dict[str, Any] = {"type": "HEARTBEAT", "agentId": "dev-e-bad", "status": "x"}
    body.update(draw(st.dictionaries(TEXT, VALUES, min_size=1, max_size=3)))
    return encode(body)


HEADER_VALUES = st.binary(min_size=1, max_size=40).filter(
    lambda b: b"\r" not in b and b"\n" not in b and not b[:1].isspace() and not b[-1:].isspace()
)
HEADERS = st.dictionaries(
    st.sampled_from(["Authorization", "X-Request-Id", "Idempotency-Key", "Origin", "Cookie"]),
    HEADER_VALUES,
    max_size=3,
)


@pytest.fixture
async def server(
    serve: Callable[..., Awaitable[int]],
    make_context: Callable[..., AppContext],
    http_session: aiohttp.ClientSession,
) -> tuple[int, aiohttp.ClientSession]:
    """The real ApiServer (header bytes its parser refuses are answered by it, in JSON)."""
    return await serve(make_context), http_session


@FUZZ
@given(body=bodies(), headers=HEADERS)
async def test_hostile_headers_and_bodies_never_fail_the_server_or_a_bystander(
    server: tuple[int, aiohttp.ClientSession],
    store: EventStore,
    body: bytes,
    headers: dict[str, bytes],
) -> None:
    port, http = server
    before = await store.head_position()
    bystander = {"type": "HEARTBEAT", "agentId": "dev-e-good", "status": f"at-{before}"}

    async def post_bystander() -> int:
        url = f"http://127.0.0.1:{port}/api/events"
        async with http.post(url, json=bystander) as response:
            return response.status

    hostile, good = await asyncio.gather(
        raw_request(port, request_bytes("POST", "/api/events", body, {**JSON, **headers})),
        post_bystander(),
    )
    assert hostile.status < 500, (body, headers, hostile)
    assert hostile.headers["content-type"].startswith("application/json"), hostile
    assert hostile.status == 200 or set(json.loads(hostile.body)) >= {"error", "message"}
    assert good == 200
    stored = await store.read_all(before, 10)
    assert ("dev-e-good", f"at-{before}") in {(e.stream_id, e.data["status"]) for e in stored}
    if hostile.status >= 400:
        assert {e.stream_id for e in stored} == {"dev-e-good"}
