"""Idempotency keys were global: agent A's key swallowed agent B's different event, and the
same key with another body was called a duplicate. Now a key belongs to its actor, and a key
reused for another event is a 422 that stores nothing."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp.test_utils import TestClient

from bot.context import AppContext
from store.events import EventStore

TOKENS = {"dev-e-1": "dev-e-1-token-0123456789", "dev-e-2": "dev-e-2-token-0123456789"}


def beat(agent: str, status: str = "working") -> dict[str, Any]:
    return {"type": "HEARTBEAT", "agentId": agent, "status": status}


async def post(api: TestClient, body: dict[str, Any], key: str, **headers: str) -> Any:
    response = await api.post("/api/events", json=body, headers={"Idempotency-Key": key, **headers})
    return response.status, await response.json()


async def test_without_tokens_a_key_belongs_to_the_events_agent(
    api: TestClient, store: EventStore
) -> None:
    assert (await post(api, beat("dev-e-1"), "k"))[0] == 200
    status, body = await post(api, beat("dev-e-2"), "k")
    assert (status, body["duplicate"]) == (200, False)
    assert {e.stream_id for e in await store.read_all(0, 10)} == {"dev-e-1", "dev-e-2"}
    # Issue events without an agent: the key belongs to the stream.
    approve = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 1}
    assert (await post(api, approve, "k"))[1]["duplicate"] is False
    assert (await post(api, {**approve, "issueNumber": 2}, "k"))[1]["duplicate"] is False
    assert await store.head_position() == 4


async def test_the_same_key_with_the_same_event_is_a_duplicate_and_another_event_a_422(
    api: TestClient, store: EventStore
) -> None:
    assert (await post(api, beat("dev-e-1"), "k"))[0] == 200
    status, body = await post(api, beat("dev-e-1"), "k")
    assert (status, body["duplicate"]) == (200, True)
    status, body = await post(api, beat("dev-e-1", "idle"), "k")
    assert status == 422, body
    assert body["error"] == "unprocessable"
    assert await store.head_position() == 1


async def test_with_tokens_a_key_belongs_to_the_tokens_agent(
    make_context: Callable[..., AppContext],
    api_client_factory: Callable[[AppContext], Awaitable[TestClient]],
    store: EventStore,
) -> None:
    pairs = ",".join(f"{agent}={token}" for agent, token in TOKENS.items())
    api = await api_client_factory(make_context({"CONDUCTOR_API_TOKENS": pairs}))
    approve = {"type": "ISSUE_APPROVED", "repo": "acme/app", "issueNumber": 1}
    one = {"Authorization": f"Bearer {TOKENS['dev-e-1']}"}
    two = {"Authorization": f"Bearer {TOKENS['dev-e-2']}"}
    assert (await post(api, approve, "k", **one))[1]["duplicate"] is False
    # The same issue event and key from another agent's token is that agent's own write.
    assert (await post(api, approve, "k", **two))[1]["duplicate"] is False
    assert (await post(api, approve, "k", **two))[1]["duplicate"] is True
    assert await store.head_position() == 2
