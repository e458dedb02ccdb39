"""Appends: versions, optimistic concurrency, idempotency, reads, in real PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest

from store.database import connect
from store.errors import ConcurrencyError
from store.events import EventStore, NewEvent
from store.locks import APPEND_LOCK


def approved(number: int, **extra: object) -> NewEvent:
    return NewEvent(
        "ISSUE_APPROVED", {"repo": "acme/app", "issueNumber": number, **extra}, {"actor": "test"}
    )


async def test_append_numbers_versions_and_positions(store: EventStore) -> None:
    first = await store.append("acme/app#1", [approved(1)], expected_version=0)
    second = await store.append(
        "acme/app#1",
        [NewEvent("ISSUE_ASSIGNED", {"repo": "acme/app", "issueNumber": 1, "agentId": "dev-e-1"})],
        expected_version=1,
    )
    assert (first.version, first.last_position) == (1, 1)
    assert (second.version, second.last_position) == (2, 2)
    events = await store.read_stream("acme/app#1")
    assert [(e.version, e.type) for e in events] == [(1, "ISSUE_APPROVED"), (2, "ISSUE_ASSIGNED")]
    assert events[0].metadata == {"actor": "test"}


async def test_several_events_in_one_append_land_together(store: EventStore) -> None:
    result = await store.append("acme/app#2", [approved(2), approved(2, title="again")])
    assert (result.first_position, result.last_position, result.version) == (1, 2, 2)


async def test_stale_expected_version_stores_nothing(store: EventStore) -> None:
    await store.append("acme/app#1", [approved(1)])
    with pytest.raises(ConcurrencyError) as raised:
        await store.append("acme/app#1", [approved(1)], expected_version=0)
    assert raised.value.actual == 1
    assert len(await store.read_stream("acme/app#1")) == 1
    assert await store.head_position() == 1


async def test_ten_concurrent_appends_with_one_expected_version_exactly_one_lands(
    store: EventStore,
) -> None:
    await store.append("acme/app#7", [approved(7)])

    async def attempt(i: int) -> bool:
        try:
            await store.append("acme/app#7", [approved(7, title=f"writer {i}")], expected_version=1)
        except ConcurrencyError:
            return False
        return True

    outcomes = await asyncio.gather(*(attempt(i) for i in range(10)))
    assert outcomes.count(True) == 1
    assert [e.version for e in await store.read_stream("acme/app#7")] == [1, 2]


async def test_retried_append_with_the_same_key_stores_one_event(store: EventStore) -> None:
    first = await store.append("acme/app#3", [approved(3)], idempotency_key="approved:node-3")
    again = await store.append("acme/app#3", [approved(3)], idempotency_key="approved:node-3")
    assert not first.duplicate
    assert again.duplicate
    assert (again.last_position, again.version) == (first.last_position, first.version)
    assert len(await store.read_stream("acme/app#3")) == 1


async def test_concurrent_retries_with_one_key_store_one_event(store: EventStore) -> None:
    results = await asyncio.gather(
        *(store.append("acme/app#4", [approved(4)], idempotency_key="k4") for _ in range(8))
    )
    assert sum(not r.duplicate for r in results) == 1
    assert {r.last_position for r in results} == {results[0].last_position}
    assert len(await store.read_stream("acme/app#4")) == 1


async def test_read_all_is_in_global_order_and_pages(store: EventStore) -> None:
    for n in range(1, 6):
        await store.append(f"acme/app#{n}", [approved(n)])
    page = await store.read_all(after_position=2, limit=2)
    assert [e.position for e in page] == [3, 4]
    recent = await store.read_recent(2)
    assert [e.position for e in recent] == [5, 4]
    only = await store.read_all(0, 100, types=["ISSUE_ASSIGNED"])
    assert only == []


async def test_an_empty_append_is_refused(store: EventStore) -> None:
    with pytest.raises(ValueError, match="at least one event"):
        await store.append("acme/app#1", [])


async def test_a_caller_that_gives_up_does_not_cancel_the_appends_batched_with_it(
    store: EventStore,
) -> None:
    tasks = [
        asyncio.create_task(store.append(f"acme/app#{n}", [approved(n)])) for n in range(1, 11)
    ]
    await asyncio.sleep(0)  # the first writes inline; the others queue behind it
    tasks[5].cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert isinstance(results[5], asyncio.CancelledError)
    stored = [r for i, r in enumerate(results) if i != 5]
    assert all(not isinstance(r, BaseException) for r in stored), stored
    # The cancelled caller's append was already on its way: it lands too, once.
    assert await store.head_position() == 10


async def test_the_sql_functions_take_the_append_lock_python_names(database_url: str) -> None:
    # The rebuild takes APPEND_LOCK from Python, the appends and claims conductor_append_lock():
    # one lock only if the two are one key. The call is folded to its constant when planned.
    conn = await connect(database_url)
    try:
        assert await conn.fetchval("SELECT conductor_append_lock()") == APPEND_LOCK
        plan = await conn.fetchval(
            "EXPLAIN (VERBOSE, FORMAT JSON) SELECT pg_advisory_xact_lock(conductor_append_lock())"
        )
    finally:
        await conn.close()
    assert plan[0]["Plan"]["Output"] == [f"pg_advisory_xact_lock('{APPEND_LOCK}'::bigint)"]
