"""The follower: every event, in order, even across a dropped connection."""

from __future__ import annotations

import asyncio

import asyncpg

from store.events import EventFollower, EventStore, NewEvent
from tests.waiting import wait_until


def heartbeat(i: int) -> NewEvent:
    return NewEvent("HEARTBEAT", {"agentId": "dev-e-1", "status": f"beat-{i}"})


async def collect(follower: EventFollower, count: int, into: list[int]) -> None:
    async for event in follower:
        into.append(event.position)
        if len(into) == count:
            return


async def test_follower_catches_up_then_follows_live(store: EventStore, database_url: str) -> None:
    for i in range(3):
        await store.append("dev-e-1", [heartbeat(i)])
    seen: list[int] = []
    # A long poll interval: only NOTIFY can wake it in time.
    follower = EventFollower(store, database_url, after_position=1, poll_interval=60)
    task = asyncio.create_task(collect(follower, 5, seen))
    for i in range(3, 6):
        await store.append("dev-e-1", [heartbeat(i)])
    await asyncio.wait_for(task, 10)
    assert seen == [2, 3, 4, 5, 6]


async def test_a_dropped_connection_loses_no_event(store: EventStore, database_url: str) -> None:
    seen: list[int] = []
    follower = EventFollower(
        store, database_url, after_position=0, poll_interval=0.2, reconnect_delay=0.05
    )
    task = asyncio.create_task(collect(follower, 20, seen))
    for i in range(10):
        await store.append("dev-e-1", [heartbeat(i)])
    # Kill the follower's LISTEN connection from the server side, then keep appending.
    admin = await asyncpg.connect(database_url)
    try:
        await wait_until(
            lambda: follower._conn is not None, timeout=5, what="the follower listening"
        )
        pid = follower._conn.get_server_pid()  # type: ignore[union-attr]
        await admin.execute("SELECT pg_terminate_backend($1)", pid)
    finally:
        await admin.close()
    for i in range(10, 20):
        await store.append("dev-e-1", [heartbeat(i)])
    await asyncio.wait_for(task, 15)
    assert seen == list(range(1, 21))
