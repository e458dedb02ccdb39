"""Claims that arrive while a write is in flight ride in the appends' next batch
(conductor_claim_batch): one transaction, one commit. Each still succeeds or fails on its own,
exclusively."""

from __future__ import annotations

import asyncio
from collections import Counter

import pytest

from store.errors import EventValidationError
from store.events import EventStore, NewEvent

REPO = "acme/app"


def approved(number: int) -> NewEvent:
    return NewEvent("ISSUE_APPROVED", {"repo": REPO, "issueNumber": number}, {"actor": "test"})


def heartbeat(agent: str) -> NewEvent:
    return NewEvent("HEARTBEAT", {"agentId": agent, "status": "idle"})


async def test_claims_and_appends_that_arrive_together_share_a_commit(store: EventStore) -> None:
    for number in range(1, 11):
        await store.append(f"{REPO}#{number}", [approved(number)])
    writes = []
    for i in range(20):
        writes.append(store.claim("issue", f"dev-e-{i}", {"actor": f"dev-e-{i}"}))
        writes.append(store.append(f"agent/dev-e-{i}", [heartbeat(f"dev-e-{i}")]))
    results = await asyncio.gather(*writes)

    claims = results[0::2]
    won = [c for c in claims if c is not None]
    assert len(won) == 10 and len({c.stream_id for c in won}) == 10  # each issue once
    assert claims.count(None) == 10
    # recorded_at is the transaction's start: the events of one commit share it. All but the
    # first write (sent alone) went in shared commits, claims beside heartbeats.
    events = await store.read_all(10, 100)
    assert len(events) == 30
    commits = Counter(e.recorded_at for e in events)
    assert len(commits) < 10, commits
    shared = {e.recorded_at for e in events if e.type == "ISSUE_ASSIGNED"} & {
        e.recorded_at for e in events if e.type == "HEARTBEAT"
    }
    assert shared, "no claim shared a commit with an append"


async def test_a_failing_claim_in_a_batch_fails_alone(store: EventStore) -> None:
    for number in range(1, 4):
        await store.append(f"{REPO}#{number}", [approved(number)])
    writes = [
        store.append("agent/dev-e-0", [heartbeat("dev-e-0")]),  # goes alone; the rest queue
        store.claim("issue", "dev-e-1", {}),
        store.claim("nonsense", "dev-e-2", {}),  # conductor_claim raises 22023 for it
        store.claim("issue", "dev-e-3", {}),
        store.append("agent/dev-e-4", [heartbeat("dev-e-4")]),
    ]
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert isinstance(results[2], EventValidationError)
    assert "unknown claim kind" in str(results[2])
    assert {results[1].stream_id, results[3].stream_id} == {f"{REPO}#1", f"{REPO}#2"}
    assert not isinstance(results[4], BaseException)
    assert [e.type for e in await store.read_stream("agent/dev-e-4")] == ["HEARTBEAT"]


async def test_a_claim_postgresql_would_refuse_is_refused_before_it_joins_a_batch(
    store: EventStore,
) -> None:
    await store.append(f"{REPO}#1", [approved(1)])
    with pytest.raises(EventValidationError, match="agent id"):
        await store.claim("issue", "dev-e\x00", {})
    with pytest.raises(EventValidationError, match="route key"):
        await store.claim("issue", "dev-e-1", {}, route_keys=["node\x00"])
    with pytest.raises(EventValidationError, match="metadata"):
        await store.claim("issue", "dev-e-1", {"actor": "\ud800"})
    # Nothing was claimed: the issue is still there for the next agent.
    claim = await store.claim("issue", "dev-e-1", {})
    assert claim is not None and claim.stream_id == f"{REPO}#1"


async def test_a_claim_given_up_before_its_batch_is_sent_is_not_made(store: EventStore) -> None:
    await store.append(f"{REPO}#1", [approved(1)])
    writing = asyncio.create_task(store.append("agent/dev-e-0", [heartbeat("dev-e-0")]))
    await asyncio.sleep(0)  # the heartbeat is in flight; the claim queues behind it
    claiming = asyncio.create_task(store.claim("issue", "dev-e-1", {}))
    await asyncio.sleep(0)
    claiming.cancel()
    await writing
    with pytest.raises(asyncio.CancelledError):
        await claiming
    assert await store.read_all(0, 100, types=["ISSUE_ASSIGNED"]) == []
    claim = await store.claim("issue", "dev-e-2", {})
    assert claim is not None and claim.stream_id == f"{REPO}#1"
