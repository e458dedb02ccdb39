"""The High finding: one agent's bad event lost other agents' events.

Appends that arrive together share one `conductor_append_batch` call; PostgreSQL refused the
whole array for one lone surrogate (or a non-UTF-8 header kept as metadata), and every
append of the batch answered 500. Now the bad request alone fails, and every valid write
beside it is stored: asserted by reading the events back.
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from store.errors import EventValidationError
from store.events import EventStore, NewEvent
from tests.hostile.conftest import JSON, raw_request, request_bytes

WRITERS = 40
ROUNDS = 3
BAD_BODY = '{"type":"HEARTBEAT","agentId":"dev-e-bad","status":"x","n":"\\ud800"}'


def heartbeat(agent: str, n: int) -> dict[str, Any]:
    return {"type": "HEARTBEAT", "agentId": agent, "status": f"round-{n}"}


async def test_dozens_of_valid_writers_beside_bad_ones_all_get_stored(
    api: TestClient, store: EventStore
) -> None:
    port = api.server.port
    assert port is not None

    async def valid_writer(i: int) -> list[int]:
        statuses = []
        for n in range(ROUNDS):
            response = await api.post("/api/events", json=heartbeat(f"dev-e-{i}", n))
            statuses.append(response.status)
            await response.read()
        return statuses

    async def bad_writer() -> list[int]:
        statuses = []
        for _ in range(ROUNDS):
            # The lone surrogate in an extra field, as in the report.
            response = await api.post("/api/events", data=BAD_BODY, headers=JSON)
            statuses.append(response.status)
            # A valid body whose X-Request-Id (kept as metadata) is not UTF-8.
            raw = await raw_request(
                port,
                request_bytes(
                    "POST",
                    "/api/events",
                    json.dumps(heartbeat("dev-e-bad", 0)).encode(),
                    {**JSON, "X-Request-Id": b"\xff\xfe"},
                ),
            )
            statuses.append(raw.status)
        return statuses

    results = await asyncio.gather(bad_writer(), *(valid_writer(i) for i in range(WRITERS)))
    bad, valid = results[0], results[1:]
    assert set(bad) == {400}, bad
    assert all(statuses == [200] * ROUNDS for statuses in valid), valid

    events = await store.read_all(0, 10_000)
    stored = {(e.stream_id, e.data["status"]) for e in events}
    expected = {(f"dev-e-{i}", f"round-{n}") for i in range(WRITERS) for n in range(ROUNDS)}
    assert stored == expected
    assert len(events) == WRITERS * ROUNDS


async def test_a_batch_postgresql_refuses_is_retried_member_by_member(
    store: EventStore, caplog: pytest.LogCaptureFixture
) -> None:
    """Validation can never be complete: an event the checks let through but the driver
    cannot encode (here a set, which JSON has no form for) fails only its own append."""
    good = [
        store.append(f"agent-{i}", [NewEvent("HEARTBEAT", {"agentId": f"agent-{i}", "n": i})])
        for i in range(30)
    ]
    bad = store.append("agent-bad", [NewEvent("HEARTBEAT", {"agentId": "x", "n": {1, 2}})])
    with caplog.at_level(logging.WARNING, logger="store.events"):
        results = await asyncio.gather(*good[:15], bad, *good[15:], return_exceptions=True)
    failures = [r for r in results if isinstance(r, BaseException)]
    assert len(failures) == 1
    assert isinstance(failures[0], EventValidationError)
    # The bad append did share a batch that failed, and the others were retried alone.
    assert "retrying each alone" in caplog.text
    stored = await store.read_all(0, 100)
    assert sorted(e.stream_id for e in stored) == sorted(f"agent-{i}" for i in range(30))


@pytest.mark.parametrize(
    ("data", "metadata"),
    [
        ({"agentId": "x", "n": "\ud800"}, {}),
        ({"agentId": "x", "n\x00": 1}, {}),
        ({"agentId": "x", "n": float("nan")}, {}),
        ({"agentId": "x", "n": 10**120}, {}),
        ({"agentId": "x"}, {"correlationId": "\udcff\udcfe"}),
    ],
)
async def test_what_jsonb_cannot_hold_is_refused_before_it_joins_a_batch(
    store: EventStore, data: dict[str, Any], metadata: dict[str, Any]
) -> None:
    with pytest.raises(EventValidationError):
        await store.append("agent-x", [NewEvent("HEARTBEAT", data, metadata)])
    assert await store.head_position() == 0
