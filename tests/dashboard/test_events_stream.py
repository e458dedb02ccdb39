"""The dashboard's server-sent events: live changes, resuming from Last-Event-ID, one follower."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestClient

from bot.web.dashboard import sse
from tests.dashboard.conftest import DashboardFactory, issue, post_event
from tests.waiting import wait_until

WAIT = 10.0  # seconds a test waits for a message before it fails


@dataclass
class Message:
    event: str | None
    id: str | None
    data: dict[str, Any] | None
    comment: str | None = None
    retry: int | None = None


class SseReader:
    """Reads an SSE response message by message (comments and retry lines included)."""

    def __init__(self, response: aiohttp.ClientResponse) -> None:
        self.response = response

    async def next(self) -> Message:
        fields: dict[str, str] = {}
        comment = None
        while True:
            raw = await asyncio.wait_for(self.response.content.readline(), WAIT)
            if raw == b"":
                raise EOFError("the stream ended")
            line = raw.decode().rstrip("\n")
            if line == "":
                if fields or comment is not None:
                    data = json.loads(fields["data"]) if "data" in fields else None
                    retry = int(fields["retry"]) if "retry" in fields else None
                    return Message(fields.get("event"), fields.get("id"), data, comment, retry)
                continue
            if line.startswith(":"):
                comment = line[1:].strip()
                continue
            name, _, value = line.partition(":")
            fields[name] = value.removeprefix(" ")

    async def next_event(self) -> Message:
        """The next message that is an event (skipping comments and the retry line)."""
        while True:
            message = await self.next()
            if message.event is not None:
                return message


async def open_stream(client: TestClient, **headers: str) -> SseReader:
    response = await client.get("/dashboard/events", headers=headers)
    assert response.status == 200, await response.text()
    assert response.headers["Content-Type"] == "text/event-stream"
    return SseReader(response)


async def drain(stream: SseReader) -> None:
    while True:
        await stream.next()


def hub_of(client: TestClient) -> sse.DashboardHub:
    return client.server.app[sse.HUB]


async def test_a_new_event_reaches_the_page(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    first = await post_event(client, issue("ISSUE_APPROVED", 1, title="one"))
    stream = await open_stream(client)

    retry = await stream.next()
    assert retry.retry == sse.RETRY_MILLISECONDS
    hello = await stream.next_event()
    assert hello.event == "hello" and hello.id == str(first["position"])

    posted = await post_event(client, issue("ISSUE_ASSIGNED", 1, agentId="dev-e-1"))
    change = await stream.next_event()
    assert change.event == "change"
    assert change.id == str(posted["position"])
    assert change.data == {
        "position": posted["position"],
        "type": "ISSUE_ASSIGNED",
        "streamId": "acme/app#1",
        "topics": ["board"],
    }

    beat = await post_event(client, {"type": "HEARTBEAT", "agentId": "dev-e-1", "status": "idle"})
    change = await stream.next_event()
    assert change.id == str(beat["position"]) and change.data is not None
    assert change.data["topics"] == ["agents", "board"]


async def test_a_reconnecting_page_gets_what_it_missed(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    seen = await post_event(client, issue("ISSUE_APPROVED", 1))
    missed = [
        await post_event(client, issue("ISSUE_APPROVED", 2)),
        await post_event(
            client,
            {
                "type": "TOKEN_USAGE",
                "agentId": "dev-e-1",
                "model": "m",
                "inputTokens": 1,
                "outputTokens": 1,
                "costUsd": 0.01,
            },
        ),
        await post_event(client, issue("ISSUE_ASSIGNED", 2, agentId="dev-e-1")),
    ]

    stream = await open_stream(client, **{"Last-Event-ID": str(seen["position"])})
    replayed = [await stream.next_event() for _ in missed]
    assert [m.id for m in replayed] == [str(e["position"]) for e in missed]
    assert [m.data["type"] for m in replayed if m.data] == [
        "ISSUE_APPROVED",
        "TOKEN_USAGE",
        "ISSUE_ASSIGNED",
    ]
    assert replayed[1].data is not None and replayed[1].data["topics"] == ["spend", "agents"]
    hello = await stream.next_event()
    assert hello.event == "hello" and hello.data == {
        "position": missed[-1]["position"],
        "resumed": True,
    }

    # And it goes on live, with nothing sent twice.
    live = await post_event(client, issue("WORK_STARTED", 2, agentId="dev-e-1"))
    change = await stream.next_event()
    assert change.id == str(live["position"])


async def test_a_page_far_behind_is_told_to_reload_its_data(
    dashboard_factory: DashboardFactory, monkeypatch: pytest.MonkeyPatch
):
    monkeypatch.setattr(sse, "CATCH_UP_LIMIT", 3)
    client = await dashboard_factory()
    for number in range(1, 6):
        last = await post_event(client, issue("ISSUE_APPROVED", number))
    stream = await open_stream(client, **{"Last-Event-ID": "0"})
    resync = await stream.next_event()
    assert resync.event == "resync" and resync.id == str(last["position"])


async def test_a_bad_last_event_id_is_refused(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    response = await client.get("/dashboard/events", headers={"Last-Event-ID": "yesterday"})
    assert response.status == 400
    assert "Last-Event-ID" in (await response.json())["message"]


async def test_one_follower_serves_every_page(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    hub = hub_of(client)
    assert not hub.following  # started by the first page, not before
    pages = [await open_stream(client) for _ in range(3)]
    for page in pages:
        assert (await page.next_event()).event == "hello"
    assert hub.following and hub.subscribers == 3
    follower = hub._task

    posted = await post_event(client, issue("ISSUE_APPROVED", 7))
    for page in pages:
        change = await page.next_event()
        assert change.id == str(posted["position"])
    assert hub._task is follower  # still the one follower

    # A page that goes away is forgotten at its next write (a keepalive at the latest).
    hub.heartbeat_seconds = 0.05
    pages[0].response.close()
    await wait_until(
        lambda: hub.subscribers == 2, timeout=WAIT, what="the closed page to be forgotten"
    )


async def test_keepalive_comments_keep_an_idle_stream_open(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    hub_of(client).heartbeat_seconds = 0.05
    stream = await open_stream(client)
    await stream.next_event()  # hello
    message = await stream.next()
    assert message.comment == "keepalive" and message.event is None


async def test_shutting_down_ends_every_stream(dashboard_factory: DashboardFactory):
    client = await dashboard_factory()
    stream = await open_stream(client)
    await stream.next_event()
    hub = hub_of(client)
    async with asyncio.timeout(WAIT):
        await client.server.app.shutdown()  # what the runner does before draining requests
        with pytest.raises(EOFError):
            await drain(stream)
    assert not hub.following and hub.subscribers == 0
